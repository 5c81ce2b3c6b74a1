"""Reproduce paper Figures 5-10: `python -m evaluation.figure N|all --data DIR --out DIR`.

Runs each figure's experiments (evaluation.experiments), writes results/, logs/ and parsed/ in
the existing simulator's layout, draws the panels beside its outputs and prints the differences;
with `--real DIR` also the §4 errors of both simulators against real measurements.
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from evaluation import diff, plots, series
from evaluation.compare import read_requests
from evaluation.console import ConsoleRun, parse_console
from evaluation.experiments import FEATURE_OF_FLAG, FIGURE_TABLES, FIGURES, Experiment, of_figure
from evaluation.runner import WORKERS, RunRecord, missing_flags, run_all
from inference_serving.output_paths import check_output_folder
from llmsim_core.args import OneLineParser, integer, path_arg, print_flag_warnings
from llmsim_core.cli_guard import guarded
from llmsim_core.errors import InputError


@dataclass(slots=True)
class FigureResult:
    """What one figure produced: parsed TSVs (relative paths), panels, notices, failures."""

    figure: int
    tsvs: list[Path] = field(default_factory=list)
    panels: list[plots.Panel] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # runs that failed, with their error


def _skip_line(exp: Experiment, missing: list[str]) -> str:
    features = ", ".join(dict.fromkeys(FEATURE_OF_FLAG.get(f, f) for f in missing))
    return (f"figure {exp.figure} {exp.key.split('/', 1)[1]}: skipped, needs {features} "
            f"(this simulator does not accept {' '.join(missing)})")


def _fmt(value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.4g}"


def _write(folder: Path, out: Path, tables: dict[str, series.Table], result: FigureResult) -> None:
    for name, table in tables.items():
        series.write_tsv(folder / "parsed" / name, table)
        result.tsvs.append((folder / "parsed" / name).relative_to(out))


def _handle_run(rec: RunRecord, out: Path, result: FigureResult) -> ConsoleRun | None:
    exp = rec.experiment
    name = exp.key.split("/", 1)[1]
    if rec.returncode != 0:
        named = [f for f in exp.flags if f.startswith("--") and f in rec.error]
        if rec.returncode == 2 and named:
            result.notices.append(_skip_line(exp, named))
        else:
            result.notices.append(f"figure {exp.figure} {name}: failed (exit {rec.returncode}): "
                                  f"{rec.error}")
            result.failures.append(f"figure {exp.figure} {name} ({rec.error})")
        return None
    run = parse_console(rec.log.read_text(encoding="utf-8"))
    for kind in exp.series:
        tables, missing = series.per_run_tables(kind, exp.run, run)
        if missing:
            result.notices.append(f"figure {exp.figure} {name}: {kind} series skipped, needs "
                                  f"{missing}")
        _write(exp.folder(out), out, tables, result)
    return run


def _reference_results(exp: Experiment, data: Path) -> Path:
    """The existing simulator's per-request CSV of `exp` (plain or .gz; it may not exist)."""
    ref = exp.folder(data / "reference_sim") / "results" / exp.result_file
    return ref if ref.is_file() else ref.with_name(ref.name + ".gz")


def check_references(figures: list[int], data: Path, real: Path | None) -> None:
    """Read every reference file the figures compare against before anything runs, so a
    broken one stops the command at once rather than after all the runs."""
    for fig in figures:
        for exp in of_figure(fig):
            ref = _reference_results(exp, data)
            if ref.is_file():
                for row in read_requests(ref).values():
                    _end_time(row, ref)
        # The tables compare_tsv reads: parsed/ series of the existing simulator, reference/
        # ones of the real measurements.
        folders = [(data / "reference_sim" / f"figure_{fig}", "parsed/*.tsv")]
        if real is not None:
            folders.append((real / f"figure_{fig}", "reference/*.tsv"))
        for folder, pattern in folders:
            for path in sorted(folder.rglob(pattern)) if folder.is_dir() else ():
                series.read_tsv(path)


def _request_rows(exp: Experiment, out: Path, data: Path) -> list[str]:
    ours = exp.folder(out) / "results" / exp.result_file
    ref = _reference_results(exp, data)
    if not (ours.is_file() and ref.is_file()):
        return []
    a, b = read_requests(ours), read_requests(ref)
    gaps = [abs(_end_time(a[rid], ours) - _end_time(row, ref)) for rid, row in b.items()
            if rid in a]
    same = sum(1 for g in gaps if g == 0)
    worst = max(gaps, default=0) / 1e6
    return [f"  {exp.key:40} {'requests with equal end_time':34} {same} / {len(b)}",
            f"  {exp.key:40} {'max |end_time diff| ms':34} {worst:.4g}"]


def _like(theirs: dict[str, list], ours: dict[str, list], path: Path) -> dict[str, list]:
    """A reference series must hold our series' columns, all numbers (per-cell tables are
    compared where they overlap)."""
    if "time_s" in ours:
        for column in ours:
            values = theirs.get(column)
            if values is None or not all(isinstance(v, float) for v in values):
                raise InputError(f"column {column!r} is missing or not all numbers", str(path),
                                 "restore the file (the same columns as the series written)")
    return theirs


def _end_time(row: dict[str, str], path: Path) -> int:
    """A per-request row's end time (ns)."""
    text = row.get("end_time", "")
    if not (text.isascii() and text.isdigit()):
        raise InputError(f"request {row.get('request id', '?')} has end_time {text[:40]!r}, "
                         "not a whole number of ns", str(path), "restore the file")
    return int(text)


def compare_tsv(rel: Path, out: Path, data: Path, real: Path | None,
                result: FigureResult) -> list[str]:
    """Difference lines of one written TSV against the existing simulator's and real data;
    adds its panels to `result`."""
    ours = series.read_tsv(out / rel)
    sides = {"ours": ours}
    name = f"{rel.parent.parent.as_posix()}/{rel.stem}"
    lines = []
    ref_path = data / "reference_sim" / rel
    if ref_path.is_file():
        ref = _like(series.read_tsv(ref_path), ours, ref_path)
        sides["existing simulator"] = ref
        for metric, a, b, err in diff.compare(ours, ref):
            lines.append(f"  {name:40} {metric:34} ours {_fmt(a):>9}  "
                         f"existing {_fmt(b):>9}  diff {_fmt(err)}")
    real_path = real / rel.parent.parent / "reference" / rel.name if real else None
    if real_path is not None and real_path.is_file():
        measured = _like(series.read_tsv(real_path), ours, real_path)
        sides["real"] = measured
        theirs = dict((m, e) for m, _, _, e in diff.compare(sides.get("existing simulator",
                                                                      {}), measured)) \
            if "existing simulator" in sides else {}
        for metric, _, _, err in diff.compare(ours, measured):
            lines.append(f"  {name:40} vs real: {metric:26} ours err "
                         f"{_fmt(err):>9}  existing err {_fmt(theirs.get(metric, math.nan))}")
    title = str(rel.parent.parent.relative_to(f"figure_{result.figure}")).strip(".") + \
        " " + rel.stem
    maker = plots.series_panels if "time_s" in ours else plots.table_panels
    result.panels += maker(title.strip(), sides)
    return lines


def reproduce(figures: list[int], data: Path, out: Path, real: Path | None,
              num_req: int | None, draw: bool = True) -> list[FigureResult]:
    """Run, write, compare and draw the given figures; prints the report as it goes."""
    if not (data / "artifact_configs").is_dir():
        raise InputError("no artifact_configs/ folder", str(data),
                         "pass --data pointing at the shared data folder (../shared/data)")
    check_references(figures, data, real)
    results = {f: FigureResult(f) for f in figures}
    # Wall times depend on the machine: say which one measured them.
    print(f"host: {platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}); {WORKERS} runs at a time")
    runnable = []
    for fig in figures:
        for exp in of_figure(fig):
            missing = missing_flags(exp)
            if missing:
                results[fig].notices.append(_skip_line(exp, missing))
            else:
                runnable.append(exp)
    records = run_all(runnable, data, out, num_req)
    runs: dict[str, ConsoleRun] = {}
    for rec in records:
        run = _handle_run(rec, out, results[rec.experiment.figure])
        if run is not None:
            runs[rec.experiment.key] = run
    for fig in figures:
        result = results[fig]
        labelled = {e.label: runs[e.key] for e in of_figure(fig) if e.key in runs and e.label}
        for kind in FIGURE_TABLES.get(fig, ()):
            tables, missing = series.per_figure_table(kind, labelled)
            if missing:
                result.notices.append(f"figure {fig}: {kind} skipped, needs {missing}")
            _write(out / f"figure_{fig}", out, tables, result)
        print(f"== figure {fig} ==")
        for line in result.notices:
            print(line)
        for rec in records:
            if rec.experiment.figure == fig:
                print(f"  {rec.experiment.key:40} {'wall time s':34} {rec.wall_s:.2f}")
                # A failed run left the previous run's results (if any) in place: not ours.
                for line in _request_rows(rec.experiment, out, data) if rec.returncode == 0 \
                        else ():
                    print(line)
        for rel in result.tsvs:
            for line in compare_tsv(rel, out, data, real, result):
                print(line)
        if draw and result.panels:
            try:
                written = plots.draw(result.panels, f"Figure {fig}",
                                     out / f"figure_{fig}" / f"figure_{fig}")
                print(f"  wrote {', '.join(str(p) for p in written)}")
            except ImportError:
                print(f"figure {fig}: not drawn, matplotlib is not installed "
                      "(./compile.sh plot)")
        elif not result.panels:
            print(f"figure {fig}: nothing to draw (every panel needs a missing feature)")
    return list(results.values())


def check_out_folder(out: Path, inputs: list[Path]) -> None:
    """--out must be a writable folder apart from every input folder (the runs write under
    it: inside the shared data they would replace the reference results they are compared
    with)."""
    check_output_folder(out, "--out")
    where = out.resolve()
    for folder in inputs:
        inside = folder.resolve()
        if where.is_relative_to(inside) or inside.is_relative_to(where):
            raise InputError(f"--out overlaps the input folder {folder}; the runs would write "
                             "over their own inputs", f"--out {out}",
                             "write the figures to a folder outside the data")


@guarded
def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m evaluation.figure`."""
    parser = OneLineParser(prog="python -m evaluation.figure",
                           description="Reproduce paper Figures 5-10 and compare.")
    parser.add_argument("figure", choices=[*map(str, FIGURES), "all"])
    parser.add_argument("--data", type=path_arg, default=Path("../shared/data"),
                        help="shared data folder (artifact_configs, datasets, perf_models, ...)")
    parser.add_argument("--out", type=path_arg, default=Path("output/figures"),
                        help="output root: figure_<N>/[<HW>/]{results,logs,parsed}/")
    parser.add_argument("--real", type=path_arg,
                        help="real measurements, figure_<N>/[<HW>/]reference/<parsed name>")
    parser.add_argument("--num-req", type=integer, help="override every run's request count")
    parser.add_argument("--no-plot", action="store_true", help="write TSVs and tables only")
    args = parser.parse_args(argv)
    figures = list(FIGURES) if args.figure == "all" else [int(args.figure)]
    start = time.perf_counter()
    try:
        if args.num_req is not None and args.num_req <= 0:
            raise InputError(f"--num-req must be > 0, got {args.num_req}", "command line",
                             "pass a positive count")
        if args.real is not None and not args.real.is_dir():
            raise InputError("real-measurement folder not found", str(args.real),
                             "pass an existing folder to --real")
        check_out_folder(args.out, [p for p in (args.data, args.real) if p is not None])
        results = reproduce(figures, args.data.resolve(), args.out.resolve(),
                            args.real.resolve() if args.real else None, args.num_req,
                            draw=not args.no_plot)
    except InputError as exc:
        print(exc.line(), file=sys.stderr)
        return 2
    print(f"total wall time {time.perf_counter() - start:.1f} s")
    print_flag_warnings(args)
    failures = [line for r in results for line in r.failures]
    if failures:  # the other runs' outputs are complete; these runs left none
        print(InputError(f"{len(failures)} run(s) failed, first {failures[0]}", str(args.data),
                         "fix that run's config or data (every notice is above) and run "
                         "again").line(), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
