"""`--capacity`: per configuration, the highest arrival rate that meets the SLOs.

The search starts at the spec's lowest rate, doubles the rate while the SLOs hold (halves it
while they fail) until it has a rate that meets and one that fails, then bisects until the two
are at most `capacity.tolerance` req/s apart. It assumes that meeting the SLOs is monotone in
the rate, which holds for one workload re-timed to each rate in all but pathological cases.
All configurations advance together, one probe each per round, so the probes run in parallel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from evaluation.sweep_cluster import cluster_cost
from evaluation.sweep_exec import PointRunner
from evaluation.sweep_points import TraceLengths, make_points, make_row, meets
from evaluation.sweep_spec import Configuration, SweepSpec


@dataclass(slots=True)
class CapacityResult:
    """One configuration's search: the highest rate that met the SLOs (None if even
    `min_rate` failed) and the lowest that failed (None if `max_rate` still met them)."""

    config: Configuration
    cost: float
    capacity: float | None = None
    fails_at: float | None = None
    probes: list[float] = field(default_factory=list)

    def next_rate(self, spec: SweepSpec) -> float | None:
        """The next rate to probe, or None when the search is over."""
        c = spec.capacity
        lo, hi = self.capacity, self.fails_at
        if lo is None and hi is None:
            return min(max(spec.rates[0], c.min_rate), c.max_rate)
        if hi is None:
            return None if lo >= c.max_rate else min(lo * 2, c.max_rate)
        if lo is None:
            return None if hi <= c.min_rate else max(hi / 2, c.min_rate)
        return None if hi - lo <= c.tolerance else (lo + hi) / 2


def search(spec: SweepSpec, runner: PointRunner, trace: TraceLengths | None,
           check: Any) -> tuple[list[CapacityResult], list[dict[str, Any]]]:
    """Every configuration's capacity, and the rows of all probes (by configuration, rate).

    `check` turns a point's metrics into metrics or raises on an error entry."""
    results = [CapacityResult(c, cluster_cost(c.cluster, spec.cost)) for c in spec.configurations]
    rows: list[tuple[int, float, dict[str, Any]]] = []
    while True:
        wanted = [(i, r, r.next_rate(spec)) for i, r in enumerate(results)]
        wanted = [(i, r, rate) for i, r, rate in wanted if rate is not None]
        if not wanted:
            break
        points = make_points(spec, [(r.config, rate) for _, r, rate in wanted], trace)
        for (i, result, rate), metrics in zip(wanted, runner.map(points), strict=True):
            metrics = check(metrics)
            result.probes.append(rate)
            rows.append((i, rate, make_row(spec, result.config, rate, metrics)))
            if meets(spec, metrics):
                result.capacity = rate
            else:
                result.fails_at = rate
    rows.sort(key=lambda t: (t[0], t[1]))
    return results, [row for _, _, row in rows]


def cheapest(results: list[CapacityResult], target: float) -> CapacityResult | None:
    """The lowest-cost configuration whose capacity reaches `target` (ties: the higher
    capacity, then the name)."""
    able = [r for r in results if r.capacity is not None and r.capacity >= target]
    return min(able, key=lambda r: (r.cost, -r.capacity, r.config.name), default=None)


def report(spec: SweepSpec, results: list[CapacityResult]) -> list[str]:
    """The capacity table and, with a target rate, the cheapest configuration carrying it."""
    c = spec.capacity
    width = max(len(r.config.name) for r in results)
    lines = [f"capacity: highest rate with SLO attainment >= {spec.min_attainment_pct:g} % "
             f"(search tolerance {c.tolerance:g} req/s, bracket {c.min_rate:g}..{c.max_rate:g})",
             f"{'configuration':<{width}}  gpus      cost  capacity req/s  fails at req/s  "
             "probes"]
    for r in results:
        cap = f"{r.capacity:.4g}" if r.capacity is not None else f"< {c.min_rate:g}"
        fails = f"{r.fails_at:.4g}" if r.fails_at is not None else f"> {c.max_rate:g}"
        lines.append(f"{r.config.name:<{width}}  {r.config.settings['gpus']:>4}  "
                     f"{r.cost:>8g}  {cap:>14}  {fails:>14}  {len(r.probes):>6}")
    if c.target_rate is not None:
        best = cheapest(results, c.target_rate)
        lines.append(f"cheapest configuration carrying {c.target_rate:g} req/s: " + (
            f"{best.config.name} ({best.config.settings['gpus']} GPUs, cost {best.cost:g}, "
            f"capacity {best.capacity:.4g} req/s)" if best else "none of them"))
    return lines


def capacity_rows(spec: SweepSpec, results: list[CapacityResult]) -> list[dict[str, Any]]:
    """The capacity table as CSV rows."""
    target = spec.capacity.target_rate
    return [{"config": r.config.name, "gpus": r.config.settings["gpus"], "cost": r.cost,
             "capacity_req_s": r.capacity, "fails_at_req_s": r.fails_at,
             "tolerance_req_s": spec.capacity.tolerance, "probes": len(r.probes),
             "carries_target": None if target is None else
             (r.capacity is not None and r.capacity >= target)} for r in results]
