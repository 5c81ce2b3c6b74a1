"""Cluster-wide request statistics and SLO attainment, kept as compact integer arrays filled
as requests finish (each request counted once, on the instance that finished it)."""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from inference_serving.observers import Observer

if TYPE_CHECKING:  # options.py imports Slo; keep this module free of the serving stack
    from inference_serving.instance import Instance
    from inference_serving.request import Request
    from inference_serving.scheduler.base import Batch

PERCENTILES = (("mean_ms", None), ("median_ms", 50), ("p90_ms", 90), ("p99_ms", 99))
METRICS = ("ttft", "tpot", "itl", "e2e", "queueing")


@dataclass(frozen=True, slots=True)
class Slo:
    """Latency objectives in ms; None leaves a metric unconstrained."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None

    @property
    def active(self) -> bool:
        """True when at least one objective is set."""
        return any(v is not None for v in (self.ttft_ms, self.tpot_ms, self.e2e_ms))

    def met(self, request: Request) -> bool:
        """Whether `request` meets every set objective (TPOT is vacuous for one-token outputs)."""
        if self.ttft_ms is not None and request.ttft > self.ttft_ms * 1e6:
            return False
        if self.tpot_ms is not None and request.output > 1 and request.tpot > self.tpot_ms * 1e6:
            return False
        return self.e2e_ms is None or request.latency <= self.e2e_ms * 1e6


def spread_ms(samples_ns: array) -> dict[str, float] | None:
    """Mean, median, P90 and P99 in ms (numpy linear interpolation); None for no samples."""
    if not samples_ns:
        return None
    ms = np.frombuffer(samples_ns, dtype=np.int64).astype(np.float64) / 1e6
    return {key: float(ms.mean()) if q is None else float(np.percentile(ms, q))
            for key, q in PERCENTILES}


class FleetSamples(Observer):
    """Collects every finished request's TTFT, TPOT, ITL gaps, end-to-end latency and queueing
    delay (ns), and counts the requests that meet the SLO.

    TPOT is sampled only for requests with more than one output token (it is undefined
    otherwise), as vLLM's serving benchmark does.
    """

    def __init__(self, slo: Slo | None = None) -> None:
        self.slo = slo or Slo()
        self.samples = {name: array("q") for name in METRICS}
        self.requests = 0
        self.met = 0

    def on_batch_end(self, inst: Instance, batch: Batch, end_ns: int,
                     finished: list[Request]) -> None:
        """Record the requests `batch` finished."""
        for request in finished:
            self.add(request)

    def add(self, request: Request) -> None:
        """Record one finished request."""
        s = self.samples
        self.requests += 1
        s["ttft"].append(request.ttft)
        if request.output > 1:
            s["tpot"].append(request.tpot)
        s["itl"].extend(request.itl)
        s["e2e"].append(request.latency)
        s["queueing"].append(request.first_scheduled - request.arrival)
        if self.slo.active and self.slo.met(request):
            self.met += 1

    def numbers(self, seconds: float) -> dict:
        """The fleet block of the summary; `seconds` is the simulated duration."""
        out: dict = {"requests": self.requests}
        for name in METRICS:
            out[name] = spread_ms(self.samples[name])
        slo = self.slo
        out["slo"] = {"ttft_ms": slo.ttft_ms, "tpot_ms": slo.tpot_ms, "e2e_ms": slo.e2e_ms} \
            if slo.active else None
        if slo.active and self.requests:
            out["slo_attainment_pct"] = self.met / self.requests * 100
            out["goodput_req_s"] = self.met / seconds
        else:
            out["slo_attainment_pct"] = out["goodput_req_s"] = None
        return out
