"""Error metrics of evaluation.md §4 between two series or two summaries."""

from __future__ import annotations

import math
import statistics

Series = dict[float, float]  # time_s -> value


def series(times: list, values: list) -> Series:
    """A series from two equally long columns."""
    return {float(t): float(v) for t, v in zip(times, values, strict=True)}


def _outer(ours: Series, ref: Series) -> list[tuple[float, float]]:
    times = sorted(t for t in set(ours) | set(ref) if t >= 1)
    return [(ours.get(t, 0.0), ref.get(t, 0.0)) for t in times]


def wape(ours: Series, ref: Series) -> float:
    """Outer join on time_s, missing bins 0, t >= 1: sum|ours - ref| / sum ref x 100."""
    pairs = _outer(ours, ref)
    total = sum(r for _, r in pairs)
    return sum(abs(o - r) for o, r in pairs) / total * 100 if total else math.nan


def mape(ours: Series, ref: Series) -> float:
    """Outer join, t >= 1: mean over bins with ref > 0 of |ours - ref| / ref x 100."""
    errs = [abs(o - r) / r * 100 for o, r in _outer(ours, ref) if r > 0]
    return statistics.fmean(errs) if errs else math.nan


def inner_mape(ours: Series, ref: Series, t_min: float = 0.0) -> float:
    """Inner join on time_s (t >= t_min): mean |ours - ref| / ref x 100 over ref > 0."""
    errs = [abs(ours[t] - ref[t]) / ref[t] * 100 for t in sorted(set(ours) & set(ref))
            if t >= t_min and ref[t] > 0]
    return statistics.fmean(errs) if errs else math.nan


def plateau_mean(values: Series, start: float = 10.0, stop: float = 30.0) -> float:
    """Mean over start <= t < stop."""
    inside = [v for t, v in values.items() if start <= t < stop]
    return statistics.fmean(inside) if inside else math.nan


def makespan(values: Series) -> float:
    """Last time_s with a non-zero value."""
    return max((t for t, v in values.items() if v > 0), default=0.0)


def pct_error(ours: float, ref: float) -> float:
    """|ours - ref| / ref x 100."""
    return abs(ours - ref) / abs(ref) * 100 if ref else math.nan


def growth_wape(ours: Series, ref: Series) -> float:
    """WAPE after subtracting each side's own t = 0 value (isolates KV growth)."""
    def shifted(s: Series) -> Series:
        base = s.get(0.0, 0.0)
        return {t: v - base for t, v in s.items()}
    return wape(shifted(ours), shifted(ref))


def hit_mae(ours: Series, ref: Series) -> float:
    """Mean absolute difference of hit % over the inner join (percentage points)."""
    common = sorted(set(ours) & set(ref))
    return statistics.fmean(abs(ours[t] - ref[t]) for t in common) if common else math.nan


def energy(power: Series) -> float:
    """Energy over the run: sum of the 1-s power samples (J)."""
    return sum(power.values())


def idle_power(power: Series) -> float:
    """Median power over 35 <= t < 55 s."""
    inside = [v for t, v in power.items() if 35 <= t < 55]
    return statistics.median(inside) if inside else math.nan


def geomean(values: list[float]) -> float:
    """Geometric mean of positive errors (Figure 9's table)."""
    return math.exp(statistics.fmean(math.log(v) for v in values)) if values and \
        all(v > 0 for v in values) else math.nan


def throughput_metrics(ours: Series, ref: Series) -> dict[str, float]:
    """Figures 5/9/10 series metrics: WAPE, MAPE, plateau error, makespans."""
    return {"wape_pct": wape(ours, ref), "mape_pct": mape(ours, ref),
            "plateau_err_pct": pct_error(plateau_mean(ours), plateau_mean(ref)),
            "makespan_ours_s": makespan(ours), "makespan_ref_s": makespan(ref)}


def power_metrics(ours: Series, ref: Series) -> dict[str, float]:
    """Figure 6 metrics: power MAPE (inner join, t >= 1), energy error, mean/peak/idle."""
    return {"power_mape_pct": inner_mape(ours, ref, 1.0),
            "energy_err_pct": pct_error(energy(ours), energy(ref)),
            "mean_power_err_pct": pct_error(statistics.fmean(ours.values()),
                                            statistics.fmean(ref.values())),
            "peak_power_err_pct": pct_error(max(ours.values()), max(ref.values())),
            "idle_power_err_pct": pct_error(idle_power(ours), idle_power(ref))}
