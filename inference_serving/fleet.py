"""Cluster-wide request statistics and SLO attainment, kept as compact integer arrays filled
as requests finish (each request counted once, on the instance that finished it)."""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from inference_serving.gap_samples import GapSamples
from inference_serving.metrics import InstanceStats, LatencyStats, latency_stats
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
    delay (ns) and the instance that finished it, and counts the requests that meet the SLO.

    A few bytes per request: the per-request numbers are int64 arrays and the ITL gaps a
    `GapSamples` (bounded). TPOT is sampled only for requests with more than one output token
    (it is undefined otherwise), as vLLM's serving benchmark does; the per-instance summary
    counts the others as 0, as the existing simulator does.
    """

    def __init__(self, slo: Slo | None = None) -> None:
        self.slo = slo or Slo()
        self.samples = {name: array("q") for name in METRICS if name != "itl"}
        self.itl = GapSamples()
        self.instance = array("h")  # the finishing instance of each request
        self.multi = array("b")  # 1 when the request has a TPOT sample
        self.requests = 0
        self.met = 0

    def on_batch_end(self, inst: Instance, batch: Batch, end_ns: int,
                     finished: list[Request]) -> None:
        """Record the gaps `batch` sampled and the requests it finished."""
        self.itl.produced(inst.index, batch.gaps, batch.shared_gap, batch.shared_count)
        for request in finished:
            self.add(request, inst.index)

    def add(self, request: Request, instance: int = 0) -> None:
        """Record one request that finished on `instance`."""
        s = self.samples
        self.requests += 1
        self.instance.append(instance)
        s["ttft"].append(request.first_token - request.arrival)
        multi = request.output > 1
        self.multi.append(multi)
        if multi:
            s["tpot"].append(request.tpot)
        self.itl.add(instance, request.itl)
        s["e2e"].append(request.end - request.arrival)
        s["queueing"].append(request.first_scheduled - request.arrival)
        if self.slo.active and self.slo.met(request):
            self.met += 1

    def instance_stats(self, instance: int) -> InstanceStats:
        """TTFT / TPOT / ITL statistics of the requests `instance` finished (TPOT 0 for
        one-token outputs)."""
        mine = np.frombuffer(self.instance, dtype=np.int16) == instance
        ttft = np.frombuffer(self.samples["ttft"], dtype=np.int64)[mine]
        multi = np.frombuffer(self.multi, dtype=np.int8).astype(bool)
        tpot = np.zeros(self.requests, np.int64)
        tpot[multi] = np.frombuffer(self.samples["tpot"], dtype=np.int64)
        itl = self.itl.instance_ms(instance)
        return InstanceStats(latency_stats(ttft), latency_stats(tpot[mine]),
                             None if itl is None else LatencyStats(*itl))

    def numbers(self, seconds: float) -> dict:
        """The fleet block of the summary; `seconds` is the simulated duration."""
        out: dict = {"requests": self.requests}
        for name in METRICS:
            out[name] = self._itl_spread() if name == "itl" else spread_ms(self.samples[name])
        slo = self.slo
        out["slo"] = {"ttft_ms": slo.ttft_ms, "tpot_ms": slo.tpot_ms, "e2e_ms": slo.e2e_ms} \
            if slo.active else None
        if slo.active and self.requests:
            out["slo_attainment_pct"] = self.met / self.requests * 100
            out["goodput_req_s"] = self.met / seconds
        else:
            out["slo_attainment_pct"] = out["goodput_req_s"] = None
        return out

    def _itl_spread(self) -> dict[str, float] | None:
        quantiles = tuple(q for _, q in PERCENTILES if q is not None)
        spread = self.itl.fleet_ms(quantiles)
        if spread is None:
            return None
        mean, values = spread
        return dict(zip((key for key, _ in PERCENTILES), (mean, *values), strict=True))
