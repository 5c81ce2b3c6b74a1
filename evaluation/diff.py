"""Differences between two parsed TSVs of the same name (§4 metrics chosen by the columns)."""

from __future__ import annotations

import math

from evaluation import metrics as m

Columns = dict[str, list]
Row = tuple[str, float, float, float]  # metric, ours, reference, error (%, pp or s)


def _series(cols: Columns, name: str) -> m.Series:
    return m.series(cols["time_s"], cols[name])


def _one_row(cols: Columns) -> Columns:
    """A summary table; with a `framework` column, the real vLLM row (artifact layout)."""
    if "framework" not in cols:
        return cols
    names = [str(f).lower() for f in cols["framework"]]
    k = names.index("vllm") if "vllm" in names else 0
    return {c: [v[k]] for c, v in cols.items() if c != "framework"}


def _err(label: str, value: float) -> Row:
    """A metric that is itself an error: no per-side values."""
    return label, math.nan, math.nan, value


def compare(ours: Columns, ref: Columns) -> list[Row]:
    """Metric rows: series metrics when there is a time axis, else per-cell % errors."""
    if "time_s" not in ours:
        ref = _one_row(ref)
        rows: list[Row] = []
        keys = ours.get("component", [""] * len(next(iter(ours.values()))))
        for col in ours:
            if col == "component" or col not in ref:
                continue
            for k, (a, b) in enumerate(zip(ours[col], ref[col], strict=False)):
                if isinstance(a, float) and isinstance(b, float):
                    label = f"{keys[k]} {col}".strip()
                    rows.append((label, a, b, m.pct_error(a, b)))
        if {"throughput_tok_s", "mean_tpot_ms", "mean_itl_ms"} <= set(ref) and \
                {"throughput_tok_s", "mean_tpot_ms", "mean_itl_ms"} <= set(ours):
            errs = [r[3] for r in rows if r[0] in ("throughput_tok_s", "mean_tpot_ms",
                                                   "mean_itl_ms")]
            rows.append(_err("geomean err % (TPS, TPOT, ITL)", m.geomean(errs)))
        return rows
    if "throughput" in ours:
        a, b = _series(ours, "throughput"), _series(ref, "throughput")
        got = m.throughput_metrics(a, b)
        return [_err("throughput WAPE %", got["wape_pct"]),
                _err("throughput MAPE %", got["mape_pct"]),
                ("plateau mean 10-30 s", m.plateau_mean(a), m.plateau_mean(b),
                 got["plateau_err_pct"]),
                ("makespan s", got["makespan_ours_s"], got["makespan_ref_s"],
                 got["makespan_ours_s"] - got["makespan_ref_s"])]
    if "power_w" in ours:
        a, b = _series(ours, "power_w"), _series(ref, "power_w")
        got = m.power_metrics(a, b)
        return [_err("power MAPE %", got["power_mape_pct"]),
                ("energy J", m.energy(a), m.energy(b), got["energy_err_pct"]),
                ("idle power W", m.idle_power(a), m.idle_power(b), got["idle_power_err_pct"])]
    rows = []
    for mem, hit in (("gpu_mem_mb", "prefix_hit_pct"),
                     ("shared_cpu_mem_mb", "shared_cpu_prefix_hit_pct")):
        if mem in ours and mem in ref:
            a, b = _series(ours, mem), _series(ref, mem)
            rows += [_err(f"{mem} MAPE %", m.inner_mape(a, b)),
                     _err(f"{mem} growth WAPE %", m.growth_wape(a, b))]
            ha, hb = _series(ours, hit), _series(ref, hit)
            rows.append(_err(f"{hit} MAE pp", m.hit_mae(ha, hb)))
    return rows
