"""Compare two runs (per-request CSV + console log): `python -m evaluation.compare A B`.

A run is named by its stem: `DIR/NAME` finds `DIR/NAME.csv` and `DIR/NAME.txt` (or `.log`),
or, in the artifact layout, `DIR/results/NAME_result.csv[.gz]` and `DIR/logs/NAME_output.txt`.
Exit status 0 when both are identical (host wall time and output paths aside), 1 when they
differ, 2 on bad input.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import sys
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from evaluation.console import ConsoleRun, parse_console
from llmsim_core.args import OneLineParser, print_flag_warnings
from llmsim_core.cli_guard import guarded
from llmsim_core.errors import InputError
from llmsim_core.strict_json import read_text

# Summary lines that legitimately differ between identical simulations.
HOST_DEPENDENT = ("Total simulation time", "Saving each request's information to output file")
SHOWN = 20  # differing requests listed by id before "... and N more"
# Request ids are counters: beyond 18 digits (a 64-bit integer) the id is garbage, and int()
# refuses strings beyond 4300 digits.
MAX_ID_DIGITS = 18
MAX_TEXT = 1 << 29  # bytes read from one file (512 MiB): a run's CSV or log is far smaller
# The per-request columns that hold one whole number each (ns or tokens), and the ITL list.
INTEGER_COLUMNS = frozenset(("instance id", "input", "output", "arrival", "end_time", "latency",
                             "queuing_delay", "TTFT", "TPOT"))
_INTEGER = re.compile(r"-?[0-9]+")
_ITL = re.compile(r"\[(-?[0-9]+(, -?[0-9]+)*)?\]")


@dataclass(frozen=True, slots=True)
class RunFiles:
    """The per-request CSV and console log of one run (either may be absent)."""

    csv: Path | None
    log: Path | None

    def describe(self) -> str:
        """The files found, for a message (`a.csv and a.txt`, `only a.txt`)."""
        found = [str(p) for p in (self.csv, self.log) if p is not None]
        return " and ".join(found) if len(found) > 1 else f"only {found[0]}"


def locate(stem: str) -> RunFiles:
    """Find a run's files from its stem (see the module docstring)."""
    path = Path(stem)
    if not path.name or path.name in (".", ".."):
        raise InputError("not a run stem", repr(stem), "pass DIR/NAME (NAME.csv / NAME.txt, or "
                         "results/NAME_result.csv under DIR)")
    candidates = {
        "csv": [path.with_name(path.name + ".csv"), path.parent / "results" /
                f"{path.name}_result.csv", path.parent / "results" / f"{path.name}_result.csv.gz"],
        "log": [path.with_name(path.name + ".txt"), path.with_name(path.name + ".log"),
                path.parent / "logs" / f"{path.name}_output.txt"],
    }
    found = {k: next((p for p in v if p.is_file()), None) for k, v in candidates.items()}
    if found["csv"] is None and found["log"] is None:
        raise InputError("no run files found", stem, "pass DIR/NAME with NAME.csv / NAME.txt, "
                         "or results/NAME_result.csv and logs/NAME_output.txt under DIR")
    return RunFiles(found["csv"], found["log"])


def read_requests(path: Path) -> dict[str, dict[str, str]]:
    """Rows of a per-request CSV (plain or .gz) by request id."""
    fix = "pass the --output CSV of a run"
    if path.suffix != ".gz":
        return _rows(io.StringIO(read_text(path, fix)), path, fix)
    try:
        with gzip.open(path, "rt", encoding="utf-8-sig", newline="") as text:
            return _rows(_bounded(text, path), path, fix)
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:
        raise InputError(f"not a readable gzip of UTF-8 text ({exc})", str(path),
                         fix) from None


def _bounded(lines: Iterable[str], path: Path) -> Iterator[str]:
    """`lines`, stopping with an error past MAX_TEXT characters (an archive that unpacks to
    far more than any run writes)."""
    total = 0
    for line in lines:
        total += len(line)
        if total > MAX_TEXT:
            raise InputError(f"unpacks to more than {MAX_TEXT >> 20} MiB", str(path),
                             "pass the CSV of a run, not an archive of something else")
        yield line


def _rows(lines: Iterable[str], path: Path, fix: str) -> dict[str, dict[str, str]]:
    """The rows of a per-request CSV by request id, every line checked."""
    reader = csv.reader(lines)
    limit = csv.field_size_limit(MAX_TEXT)  # a long request's ITL list is one large field
    try:
        header = next(reader, None)
        if not header or "request id" not in header:
            raise InputError("not a per-request CSV (no 'request id' column)", str(path), fix)
        repeated = next((c for c in header if header.count(c) > 1), None)
        if repeated is not None:
            raise InputError(f"the header names column {repeated[:40]!r} twice", str(path), fix)
        rows: dict[str, dict[str, str]] = {}
        for number, cells in enumerate(reader, start=2):
            if len(cells) != len(header):
                raise InputError(f"line {number} has {len(cells)} field(s), the header "
                                 f"{len(header)}", str(path), fix)
            row = dict(zip(header, cells, strict=True))
            rid = row["request id"]
            if not (rid.isascii() and rid.isdigit()) or len(rid) > MAX_ID_DIGITS:
                raise InputError(f"line {number} has request id {rid[:40]!r}, not a whole "
                                 f"number of at most {MAX_ID_DIGITS} digits", str(path), fix)
            rid = str(int(rid))  # 7 and 007 are one request
            _check_cells(row, f"line {number} of {path}", fix)
            if rid in rows:
                raise InputError(f"request id {rid} appears twice (again on line {number})",
                                 str(path), fix)
            rows[rid] = row
    except csv.Error as exc:  # a NUL byte, an unterminated quote
        raise InputError(f"malformed CSV ({exc})", str(path), fix) from None
    finally:
        csv.field_size_limit(limit)
    if not rows:
        raise InputError("the per-request CSV holds no requests (a header only)", str(path), fix)
    return rows


def _check_cells(row: dict[str, str], where: str, fix: str) -> None:
    """A row's number columns hold whole numbers and its ITL a bracketed list of them."""
    for column, text in row.items():
        if column in INTEGER_COLUMNS and not _INTEGER.fullmatch(text):
            raise InputError(f"{column} is {text[:40]!r}, not a whole number", where, fix)
        if column == "ITL" and not _ITL.fullmatch(text):
            raise InputError(f"ITL is {text[:40]!r}, not a list of whole numbers like "
                             "[12, 34]", where, fix)


def request_diffs(a: dict[str, dict[str, str]], b: dict[str, dict[str, str]]) -> list[str]:
    """One line per request that is missing on a side or differs in any column."""
    lines = []
    for rid in sorted(set(a) | set(b), key=int):
        if rid not in a or rid not in b:
            lines.append(f"request {rid}: only in run {'A' if rid in a else 'B'}")
            continue
        # Columns of either side: one run's extra column is a difference too.
        cols = [c for c in dict.fromkeys([*a[rid], *b[rid]]) if a[rid].get(c) != b[rid].get(c)]
        if cols:
            detail = ", ".join(f"{c} {a[rid].get(c, '(absent)')[:40]} vs "
                               f"{b[rid].get(c, '(absent)')[:40]}" for c in cols)
            lines.append(f"request {rid}: {detail}")
    return lines


def summary_diffs(a_run: ConsoleRun, b_run: ConsoleRun) -> list[str]:
    """Differing or missing final-summary lines (label: A vs B)."""
    def kept(run: ConsoleRun) -> dict[str, str]:
        return {k: v for k, v in run.summary if not any(h in k for h in HOST_DEPENDENT)}
    a, b = kept(a_run), kept(b_run)
    return [f"{k}: {a.get(k, '(absent)')} vs {b.get(k, '(absent)')}"
            for k in [*a, *(k for k in b if k not in a)] if a.get(k) != b.get(k)]


def read_log(path: Path) -> ConsoleRun:
    """A run's console log, parsed (undecodable bytes replaced); it must hold the final
    summary."""
    with path.open("rb") as handle:
        data = handle.read(MAX_TEXT + 1)
    run = parse_console(data[:MAX_TEXT].decode("utf-8", errors="replace"), str(path))
    if not run.summary:
        raise InputError("not a run's console log (no final summary in it)", str(path),
                         "pass the stdout of a run saved as NAME.txt or NAME.log")
    return run


def compare_runs(a: RunFiles, b: RunFiles) -> list[str]:
    """Every difference between two runs, as report lines (empty when identical)."""
    if (a.csv is None) != (b.csv is None) or (a.log is None) != (b.log is None):
        raise InputError("the two runs do not have the same files (a CSV and/or a log)",
                         f"{a.describe()} against {b.describe()}",
                         "compare runs that both have the same kinds of file")
    lines = []
    if a.csv and b.csv:
        diffs = request_diffs(read_requests(a.csv), read_requests(b.csv))
        if diffs:
            lines.append(f"per-request: {len(diffs)} request(s) differ")
            lines += ["  " + d for d in diffs[:SHOWN]]
            if len(diffs) > SHOWN:
                lines.append(f"  ... and {len(diffs) - SHOWN} more")
    if a.log and b.log:
        diffs = summary_diffs(read_log(a.log), read_log(b.log))
        if diffs:
            lines.append(f"summary: {len(diffs)} line(s) differ")
            lines += ["  " + d for d in diffs]
    return lines


@guarded
def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m evaluation.compare RUN_A RUN_B`."""
    parser = OneLineParser(prog="python -m evaluation.compare",
                                     description="Compare two runs (per-request CSV + log).")
    parser.add_argument("run_a", help="stem of run A (DIR/NAME)")
    parser.add_argument("run_b", help="stem of run B (DIR/NAME)")
    args = parser.parse_args(argv)
    try:
        lines = compare_runs(locate(args.run_a), locate(args.run_b))
    except InputError as exc:
        print(exc.line(), file=sys.stderr)
        return 2
    print("\n".join(lines) if lines else "identical")
    print_flag_warnings(args)
    return 1 if lines else 0


if __name__ == "__main__":
    raise SystemExit(main())
