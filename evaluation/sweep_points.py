"""Sweep points: one configuration at one arrival rate, its requests (generated or a trace
re-timed to the rate, seeded), one simulate() call, and its CSV row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from evaluation.sweep_cluster import cluster_cost
from evaluation.sweep_spec import Configuration, SweepSpec, Workload
from inference_serving.dataset_reader import load_requests
from inference_serving.fleet import Slo
from llmsim_core.errors import InputError

STATS = ("mean", "median", "p90", "p99")
LATENCY_METRICS = ("ttft", "tpot", "itl", "e2e", "queueing")
METRIC_COLUMNS = ("finished", "duration_s", "throughput_req_s", "token_throughput_tok_s",
                  *(f"{m}_{s}_ms" for m in LATENCY_METRICS for s in STATS),
                  "slo_attainment_pct", "goodput_req_s", "goodput_per_gpu", "meets_slo")
SETTING_COLUMNS = ("config", "hardware", "model", "tp", "pp", "instances", "prefill", "decode",
                   "gpus", "cost")
RUN_COLUMNS = ("rate_req_s", "num_requests", "seed")

TraceLengths = tuple[tuple[int, int, int], ...]  # (prompt, output, arrival ns) per request


@dataclass(frozen=True, slots=True)
class Point:
    """Everything one simulation needs, picklable for a process pool or a Ray task."""

    config: str
    cluster: dict
    options: dict[str, Any]
    rate: float
    seed: int
    workload: Workload
    trace: TraceLengths | None
    slo: Slo


def read_trace(workload: Workload) -> TraceLengths | None:
    """The trace's first `num_requests` requests (None for a generated workload)."""
    if workload.trace is None:
        return None
    requests, _ = load_requests(workload.trace, workload.num_requests)
    if len(requests) < workload.num_requests:
        raise InputError(f"the trace has {len(requests)} requests, num_requests asks for "
                         f"{workload.num_requests}", str(workload.trace),
                         "lower workload.num_requests")
    if workload.arrival == "scale" and requests[-1].arrival == requests[0].arrival:
        raise InputError("every request of the trace arrives at once: there are no gaps to "
                         "scale", str(workload.trace), "use arrival: poisson or gamma")
    return tuple((r.prompt, r.output, r.arrival) for r in requests)


def point_requests(point: Point) -> list[dict]:
    """The point's requests: lengths from the generator or the trace, arrivals at its rate.

    Every arrival process is drawn at unit rate from the seed and divided by the rate, so
    the same requests arrive proportionally faster at higher rates.
    """
    w = point.workload
    if point.trace is None:
        from dataset.generate import generate_requests
        return list(generate_requests(w.num_requests, point.rate, w.input, w.output,
                                      "gamma" if w.arrival == "gamma" else "poisson", w.cv,
                                      w.max_total, point.seed, token_ids=False))
    n = len(point.trace)
    if w.arrival == "scale":
        first = point.trace[0][2]
        span_s = (point.trace[-1][2] - first) / 1e9
        # The trace's mean gap becomes 1 / rate.
        seconds = [(a - first) / 1e9 * (n - 1) / span_s / point.rate for _, _, a in point.trace]
    else:
        rng = np.random.default_rng(point.seed)
        shape = 1.0 / (w.cv * w.cv)
        gaps = rng.gamma(shape, 1.0 / shape, n) if w.arrival == "gamma" else \
            rng.exponential(1.0, n)
        seconds = (np.cumsum(gaps) / point.rate).tolist()
    return [{"input_toks": p, "output_toks": o, "arrival_time_ns": int(s * 1e9)}
            for (p, o, _), s in zip(point.trace, seconds, strict=True)]


def run_point(point: Point) -> dict[str, Any]:
    """Simulate one point; its fleet metrics, or {'error': (what, where, fix)} for bad input."""
    from inference_serving.api import simulate

    slo = {f"slo_{k}": v for k, v in (("ttft_ms", point.slo.ttft_ms),
           ("tpot_ms", point.slo.tpot_ms), ("e2e_ms", point.slo.e2e_ms)) if v is not None}
    try:
        results = simulate(point.cluster, requests=point_requests(point), num_req="all",
                           seed=point.seed, **slo, **point.options)
    except InputError as exc:
        return {"error": (exc.what, f"{exc.where} (sweep point {point.config} at "
                          f"{point.rate:g} req/s)", exc.fix)}
    s = results.summary
    fleet = s["fleet"]
    metrics: dict[str, Any] = {
        "finished": fleet["requests"], "duration_s": s["total_clocks_ns"] / 1e9,
        "throughput_req_s": s["request_throughput_req_s"],
        "token_throughput_tok_s": s["total_token_throughput_tok_s"],
        "slo_attainment_pct": fleet["slo_attainment_pct"],
        "goodput_req_s": fleet["goodput_req_s"]}
    for m in LATENCY_METRICS:
        for stat in STATS:
            metrics[f"{m}_{stat}_ms"] = None if fleet[m] is None else fleet[m][f"{stat}_ms"]
    return metrics


def make_points(spec: SweepSpec, pairs: list[tuple[Configuration, float]],
                trace: TraceLengths | None) -> list[Point]:
    """The points of (configuration, rate) pairs."""
    return [Point(c.name, c.cluster, c.options, rate, spec.seed, spec.workload, trace, spec.slo)
            for c, rate in pairs]


def make_row(spec: SweepSpec, config: Configuration, rate: float,
             metrics: dict[str, Any]) -> dict[str, Any]:
    """One CSV row: the point's settings, then its metrics, goodput per GPU and the verdict."""
    row: dict[str, Any] = {"config": config.name, **config.settings,
                           "cost": cluster_cost(config.cluster, spec.cost)}
    row.update({f"opt_{name}": config.options[name] for name in spec.option_names})
    row.update({"rate_req_s": rate, "num_requests": spec.workload.num_requests,
                "seed": spec.seed})
    row.update({k: metrics[k] for k in METRIC_COLUMNS[:-2]})
    row["goodput_per_gpu"] = metrics["goodput_req_s"] / config.settings["gpus"]
    row["meets_slo"] = meets(spec, metrics)
    return row


def meets(spec: SweepSpec, metrics: dict[str, Any]) -> bool:
    """Whether a point meets the SLOs: attainment at least min_attainment_pct."""
    return metrics["slo_attainment_pct"] >= spec.min_attainment_pct


def columns(spec: SweepSpec) -> list[str]:
    """The CSV header."""
    return [*SETTING_COLUMNS, *(f"opt_{n}" for n in spec.option_names), *RUN_COLUMNS,
            *METRIC_COLUMNS]
