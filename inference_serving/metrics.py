"""Token accounting over time windows and per-instance latency statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain

import numpy as np

from inference_serving.request import Request
from inference_serving.scheduler.base import Batch


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Mean, median and P99 of one metric, in ms."""

    mean: float
    median: float
    p99: float


def latency_stats(samples_ns: np.ndarray) -> LatencyStats | None:
    """Stats in ms with numpy's linear-interpolation percentile; None for no samples."""
    if not samples_ns.size:
        return None
    ms = samples_ns.astype(np.float64) / 1e6
    return LatencyStats(float(ms.mean()), float(np.median(ms)), float(np.percentile(ms, 99)))


@dataclass(slots=True)
class InstanceStats:
    """TTFT / TPOT / ITL statistics of the requests one instance completed."""

    ttft: LatencyStats | None
    tpot: LatencyStats | None
    itl: LatencyStats | None


def instance_stats(completed: list[Request]) -> InstanceStats:
    """Per-instance statistics (ITL samples pooled over requests)."""
    gaps = sum(len(r.itl) for r in completed)
    return InstanceStats(
        ttft=latency_stats(np.fromiter((r.ttft for r in completed), np.int64, len(completed))),
        tpot=latency_stats(np.fromiter((r.tpot for r in completed), np.int64, len(completed))),
        itl=latency_stats(np.fromiter(chain.from_iterable(r.itl for r in completed), np.int64,
                                      gaps)),
    )


@dataclass(slots=True)
class TokenCounters:
    """Prompt and generated tokens, counted when the iteration producing them completes."""

    interval_ns: int
    window_prompt: int = 0
    window_generated: int = 0
    total_prompt: int = 0
    total_generated: int = 0
    windows: list[tuple[float, float]] = field(default_factory=list)

    def on_batch_done(self, batch: Batch) -> None:
        """Count a finished iteration's first tokens (with their prompts) and decode tokens."""
        prompt = sum(r.prompt for r in batch.prompt_done)
        self.window_prompt += prompt
        self.total_prompt += prompt
        self.window_generated += batch.sampled
        self.total_generated += batch.sampled

    def close_window(self) -> tuple[float, float]:
        """End the current window; return (prompt, generation) rates in tokens/s."""
        seconds = self.interval_ns / 1e9
        rates = (round(self.window_prompt / seconds, 1), round(self.window_generated / seconds, 1))
        self.windows.append(rates)
        self.window_prompt = 0
        self.window_generated = 0
        return rates
