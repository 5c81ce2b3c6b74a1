"""Token accounting over time windows and per-instance latency statistics."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

import numpy as np

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


@dataclass(slots=True)
class TokenCounters:
    """Prompt and generated tokens, counted when the iteration producing them completes."""

    interval_ns: int
    window_prompt: int = 0
    window_generated: int = 0
    total_prompt: int = 0
    total_generated: int = 0
    # (prompt, generation) rates of every closed window, flattened: 16 bytes a window.
    windows: array = field(default_factory=lambda: array("d"))

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
        self.windows.extend(rates)
        self.window_prompt = 0
        self.window_generated = 0
        return rates

    def windows_text(self) -> str:
        """The closed windows' rates as the printed list of (prompt, generation) pairs."""
        rates = self.windows.tolist()
        return "[" + ", ".join(f"({p!r}, {g!r})" for p, g in zip(rates[::2], rates[1::2],
                                                                  strict=True)) + "]"
