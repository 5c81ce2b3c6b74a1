"""Sweep a grid of cluster configurations, simulator options and arrival rates:
`python -m evaluation.sweep SPEC.yaml --out ROWS.csv [--jobs N] [--ray [ADDRESS]] [--capacity]`.

Writes one CSV row per point (settings, fleet metrics, SLO attainment, goodput, GPUs) and a
Pareto plot (goodput per GPU against p99 latency). `--capacity` searches each configuration's
highest arrival rate that meets the SLOs instead. The spec format is in evaluation/README.md.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import os
import sys
import time
from pathlib import Path
from typing import Any

from evaluation.sweep_capacity import capacity_rows, report, search
from evaluation.sweep_exec import make_runner
from evaluation.sweep_plot import draw_pareto, require_matplotlib
from evaluation.sweep_points import columns, make_points, make_row, read_trace
from evaluation.sweep_spec import SweepSpec, load_spec
from inference_serving.output_paths import check_output_paths
from llmsim_core.args import OneLineParser, file_arg, integer, path_arg, print_flag_warnings
from llmsim_core.atomic_write import write_atomic
from llmsim_core.cli_guard import guarded
from llmsim_core.errors import InputError


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return format(value, ".10g")
    return str(value)


def csv_text(header: list[str], rows: list[dict[str, Any]]) -> str:
    """Rows as CSV text (floats to 10 significant digits, None as an empty cell)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(row[c]) for c in header])
    return buf.getvalue()


def checked_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """A point's metrics, or the InputError it reported."""
    if "error" in metrics:
        raise InputError(*metrics["error"])
    return metrics


def grid_rows(spec: SweepSpec, runner: Any, trace: Any) -> list[dict[str, Any]]:
    """Every configuration at every rate, in that order."""
    pairs = list(itertools.product(spec.configurations, spec.rates))
    results = runner.map(make_points(spec, pairs, trace))
    return [make_row(spec, c, rate, checked_metrics(m))
            for (c, rate), m in zip(pairs, results, strict=True)]


def grid_report(spec: SweepSpec, rows: list[dict[str, Any]]) -> list[str]:
    """A table of the points and each configuration's highest rate meeting the SLOs."""
    key = f"{spec.pareto_latency}_p99_ms"
    width = max(len(r["config"]) for r in rows)
    lines = [f"{'configuration':<{width}}  {'rate':>6}  {'p99 ' + spec.pareto_latency:>10}  "
             f"{'SLO %':>6}  {'goodput/GPU':>11}  meets"]
    for r in rows:
        latency = f"{r[key]:.1f}" if r[key] is not None else "-"
        lines.append(f"{r['config']:<{width}}  {r['rate_req_s']:>6g}  {latency:>10}  "
                     f"{r['slo_attainment_pct']:>6.1f}  {r['goodput_per_gpu']:>11.3f}  "
                     f"{'yes' if r['meets_slo'] else 'no'}")
    lines.append(f"highest swept rate meeting the SLOs (attainment >= "
                 f"{spec.min_attainment_pct:g} %):")
    for c in spec.configurations:
        ok = [r["rate_req_s"] for r in rows if r["config"] == c.name and r["meets_slo"]]
        lines.append(f"  {c.name}: {f'{max(ok):g} req/s' if ok else 'none'}")
    return lines


def _slo_of(spec: SweepSpec) -> float | None:
    return {"ttft": spec.slo.ttft_ms, "tpot": spec.slo.tpot_ms,
            "e2e": spec.slo.e2e_ms}.get(spec.pareto_latency)


def _parser() -> OneLineParser:
    p = OneLineParser(prog="python -m evaluation.sweep", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", type=path_arg, help="sweep spec (YAML)")
    p.add_argument("--out", type=file_arg,
                   help="CSV of the points (default: output/<spec name>.csv)")
    p.add_argument("--jobs", type=integer,
                   help="points simulated at once, locally (at most 256) or on a new local "
                   "Ray (default: the number of cores)")
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="run the points as Ray tasks: a new local Ray without ADDRESS, the "
                   "cluster at ADDRESS otherwise (extra [ray])")
    p.add_argument("--capacity", action="store_true",
                   help="search each configuration's highest rate meeting the SLOs")
    plot = p.add_mutually_exclusive_group()
    plot.add_argument("--plot", type=file_arg,
                      help="Pareto plot PNG (default: <out stem>_pareto.png)")
    plot.add_argument("--no-plot", action="store_true", help="draw no plot")
    return p

MAX_JOBS = 256  # local worker processes: beyond this a machine thrashes (use Ray instead)


@guarded
def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = _parser().parse_args(argv)
    start = time.perf_counter()
    try:
        if args.jobs is not None and not 1 <= args.jobs <= MAX_JOBS:
            raise InputError(f"--jobs must be in 1..{MAX_JOBS} (worker processes on this "
                             f"machine), got {args.jobs}", "command line",
                             "pass about the number of CPU cores, or use --ray for more")
        if args.jobs is not None and args.ray:
            raise InputError("--jobs has no effect with --ray ADDRESS (the cluster's CPUs "
                             "decide)", "command line", "drop --jobs")
        jobs = args.jobs or os.cpu_count() or 1
        out = args.out or Path("output") / f"{args.spec.stem}.csv"
        plot = None if args.no_plot else args.plot or out.with_name(f"{out.stem}_pareto.png")
        capacity_csv = out.with_name(f"{out.stem}_capacity.csv") if args.capacity else None
        written = [p for p in (out, plot, capacity_csv) if p is not None]
        if len({p.resolve() for p in written}) != len(written):
            raise InputError("two outputs would be written to the same file", "--out / --plot",
                             "give each a distinct path")
        for path in written:
            if path.is_dir():
                raise InputError("output path is a directory", str(path), "name a file")
        if plot is not None:
            require_matplotlib()
        spec = load_spec(args.spec)
        check_output_paths({"--out": out, "--plot": plot, "capacity CSV": capacity_csv},
                           inputs=spec.inputs)
        trace = read_trace(spec.workload)
        with make_runner(jobs, args.ray or None, args.ray is not None) as runner:
            if args.capacity:
                results, rows = search(spec, runner, trace, checked_metrics)
            else:
                rows = grid_rows(spec, runner, trace)
        write_atomic(out, csv_text(columns(spec), rows))
        lines = report(spec, results) if args.capacity else grid_report(spec, rows)
        if capacity_csv is not None:
            cap = capacity_rows(spec, results)
            write_atomic(capacity_csv, csv_text(list(cap[0]), cap))
        if plot is not None:
            draw_pareto(rows, spec.pareto_latency, _slo_of(spec), plot)
    except InputError as exc:
        print(exc.line(), file=sys.stderr)
        return 2
    print("\n".join(lines))
    where = f"Ray ({args.ray or 'local'})" if args.ray is not None else \
        f"{jobs} process{'es' if jobs > 1 else ''}"
    print(f"{len(rows)} points in {time.perf_counter() - start:.2f} s wall on {where}; rows: "
          f"{out}" + (f"; capacity: {capacity_csv}" if capacity_csv else "") +
          (f"; plot: {plot}" if plot else ""))
    print_flag_warnings(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
