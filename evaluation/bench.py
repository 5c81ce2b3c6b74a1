"""Per-request validation on a bench example: `python -m evaluation.bench EXAMPLE_DIR`.

An example folder (`DATA/vllm_bench/<hardware>/<model>/`) holds the cluster config in the
current schema, the existing simulator's run (`outputs/sim.csv`, `outputs/sim.log`) and,
optionally, a real vLLM run (`vllm/meta.json`, `vllm/requests.jsonl`, `vllm/timeseries.csv`).
This runs our simulator on the same config, workload (`DATA/datasets_head/`) and profiles
(`DATA/perf_models_head/`) and prints TTFT, TPOT and end-to-end latency statistics and the
per-second series of each side, with the errors against real vLLM (or, without a real run,
ours against the existing simulator). Definitions follow evaluation.md §6: TTFT = first token
− queued, TPOT = (last − first token) / (generated − 1), latency = last token − queued.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inference_serving.api import simulate
from inference_serving.instance import Instance
from inference_serving.observers import Observer
from inference_serving.scheduler.base import Batch
from llmsim_core.args import OneLineParser, number, path_arg, print_flag_warnings
from llmsim_core.bounds import INT32_MAX, SCHEDULER_LIMIT, TOKENS, Bound, checked_int
from llmsim_core.cli_guard import guarded
from llmsim_core.errors import InputError
from llmsim_core.strict_json import loads

NUM_REQUESTS = Bound(1, INT32_MAX, "", "a run serves at least one request", integer=True)
STATS = (("mean", None), ("median", 50.0), ("p90", 90.0), ("p95", 95.0), ("p99", 99.0))
METRICS = ("TTFT", "TPOT", "latency")
_DECIMAL = r"[0-9]+(?:\.[0-9]+)?"
_STATUS = re.compile(rf"^\[(?P<t>{_DECIMAL})s\] Avg prompt throughput: (?P<p>{_DECIMAL}) tokens/s, "
                     rf"Avg generation throughput: (?P<g>{_DECIMAL}) tokens/s")
_RUNNING = re.compile(r"Running Instance\[[0-9]+\]: (?P<r>[0-9]+) reqs, "
                      r"Waiting: (?P<w>[0-9]+) reqs")
_TIME_NS = re.compile(r"-?[0-9]+")  # a sim.csv time: plain ASCII digits, int() takes `1_000`
# Sanity limits: 10^18 ns is 31 years of simulated time; no engine generates a billion tokens
# per second or holds a billion requests. Both also stop numbers too long for int() or float().
MAX_SIM_NS = 10**18
MAX_SERIES = 1e9
_HEADER = re.compile(r"•\s*(?P<key>[^:]+?)\s*:\s*(?P<value>.*)$")


@dataclass(slots=True)
class Side:
    """One system's run: per-request times in ms and per-second series."""

    name: str
    ms: dict[str, list[float]] = field(default_factory=dict)
    generation: list[float] = field(default_factory=list)
    running: list[float] = field(default_factory=list)
    waiting: list[float] = field(default_factory=list)
    makespan_s: float = 0.0


MAX_EPOCH_S = 1e11  # request timestamps are Unix seconds (this is the year 5138)


def _fail(what: str, where: Path | str, fix: str) -> InputError:
    return InputError(what, str(where), fix)


def _read_json(path: Path) -> dict:
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise _fail(f"unreadable JSON ({exc.__class__.__name__})", path, "fix the file") from None
    try:
        value = loads(text, str(path), "fix the file")
    except InputError as exc:
        raise _fail(f"unreadable JSON ({exc.what})", path, "fix the file") from None
    if not isinstance(value, dict):
        raise _fail("expected a JSON object", path, "fix the file")
    return value


def _object(meta: dict, key: str, path: Path) -> dict:
    """`meta[key]` as a JSON object ({} when absent or null)."""
    value = meta.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(f"'{key}' is not a JSON object", path, "fix the file")
    return value


def _limit(engine: dict, key: str, path: Path) -> int | None:
    """An engine limit of meta.json, None when absent or null."""
    value = engine.get(key)
    return None if value is None else checked_int(value, SCHEDULER_LIMIT, f"engine_kwargs.{key}",
                                                  str(path), "fix the file")


def real_side(folder: Path, num_req: int) -> Side:
    """The real vLLM run of `num_req` requests: requests.jsonl timestamps and the 1-Hz
    timeseries.csv."""
    side = Side("real vLLM")
    ttft, tpot, latency, ends, starts = [], [], [], [], []
    path = folder / "requests.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"unreadable ({exc.__class__.__name__})", path, "fix the file") from None
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            r = loads(line, where, "fix the file")
            queued, first, last = (r[k] for k in ("queued_ts", "first_token_ts",
                                                  "last_token_ts"))
            generated = r["output_toks"]
        except (InputError, KeyError, TypeError):
            raise _fail(f"line {lineno} lacks queued_ts/first_token_ts/last_token_ts/"
                        "output_toks", where, "fix the file") from None
        if not all(_is_number(v) and 0 <= v <= MAX_EPOCH_S for v in (queued, first, last)) \
                or not queued <= first <= last:
            raise _fail(f"line {lineno} needs epoch-second timestamps in [0, {MAX_EPOCH_S:g}] "
                        "with queued_ts <= first_token_ts <= last_token_ts", where,
                        "fix the file")
        generated = checked_int(generated, TOKENS, "output_toks", where, "fix the file")
        ttft.append((first - queued) * 1e3)
        latency.append((last - queued) * 1e3)
        if generated > 1:
            tpot.append((last - first) * 1e3 / (generated - 1))
        starts.append(queued)
        ends.append(last)
    if len(ttft) != num_req:
        raise _fail(f"{len(ttft)} requests where the example ran {num_req}", path,
                    "pass the complete requests.jsonl of the run")
    side.ms = {"TTFT": ttft, "TPOT": tpot, "latency": latency}
    side.makespan_s = max(ends) - min(starts)
    path = folder / "timeseries.csv"
    try:
        for row in _csv_rows(path):
            values = [number(row[k]) for k in ("gen_throughput", "running", "waiting")]
            if not all(0 <= v <= MAX_SERIES for v in values):
                raise ValueError("not a count or rate in range")
            side.generation.append(values[0])
            side.running.append(values[1])
            side.waiting.append(values[2])
    except (OSError, UnicodeDecodeError, KeyError, TypeError, ValueError, csv.Error,
            argparse.ArgumentTypeError):
        raise _fail(f"unreadable time series (needs finite, non-negative gen_throughput, "
                    f"running, waiting: plain numbers up to {MAX_SERIES:g})", path,
                    "fix the file") from None
    if not side.generation:
        raise _fail("the time series has no rows", path, "pass the run's timeseries.csv")
    return side


def _csv_rows(path: Path) -> csv.DictReader:
    """The rows of a CSV file by column name; a header that names a column twice is an
    error (DictReader would keep the last of them without a word)."""
    reader = csv.DictReader(path.read_text(encoding="utf-8").splitlines())
    names = reader.fieldnames or []
    repeated = next((c for c in names if names.count(c) > 1), None)
    if repeated is not None:
        raise _fail(f"the header names column {repeated[:40]!r} twice", path, "fix the file")
    return reader


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


SIM_CSV_COLUMNS = ("TTFT", "TPOT", "latency", "end_time", "arrival")  # ns


def _sim_times(row: dict, where: str, lineno: int) -> list[int]:
    """The SIM_CSV_COLUMNS of one sim.csv row (ns), each a plain integer in [0, MAX_SIM_NS],
    and the request ending no earlier than it arrives."""
    cells = [row.get(key) for key in SIM_CSV_COLUMNS]
    if not all(isinstance(c, str) and _TIME_NS.fullmatch(c) for c in cells):
        raise _fail(f"line {lineno} lacks an integer TTFT/TPOT/latency/end_time/arrival", where,
                    "fix the file")
    if any(len(c.lstrip("-")) > 18 for c in cells):  # checked before int(), which has limits
        raise _fail(f"line {lineno} has a time beyond {MAX_SIM_NS:.0e} ns", where, "fix the file")
    values = [int(c) for c in cells]
    if min(values) < 0 or values[3] < values[4]:
        raise _fail(f"line {lineno} has a negative time or ends before it arrives", where,
                    "fix the file")
    return values


def _log_count(text: str, what: str, where: str) -> int:
    """A request count of a sim.log status block, at most INT32_MAX."""
    if len(text) > 10 or int(text) > INT32_MAX:
        raise _fail(f"a status block counts {text[:40]} {what} requests, beyond {INT32_MAX}",
                    where, "fix the file")
    return int(text)


def _log_rate(text: str, where: str) -> float:
    """A rate of a sim.log status line, at most MAX_SERIES tokens/s."""
    value = float(text)
    if value > MAX_SERIES:
        raise _fail(f"a status line has a rate of {text[:40]} tokens/s, beyond {MAX_SERIES:g}",
                    where, "fix the file")
    return value


def existing_side(folder: Path) -> Side:
    """The existing simulator's run: outputs/sim.csv (ns) and the status blocks of sim.log."""
    side = Side("existing sim")
    path = folder / "sim.csv"
    ms: dict[str, list[float]] = {m: [] for m in METRICS}
    ends, arrivals = [], []
    try:
        for lineno, row in enumerate(_csv_rows(path), start=2):
            if None in row:
                raise _fail(f"line {lineno} has more fields than the header", f"{path}:{lineno}",
                            "fix the file")
            ttft, tpot, latency, end, arrival = _sim_times(row, f"{path}:{lineno}", lineno)
            ms["TTFT"].append(ttft / 1e6)
            ms["TPOT"].append(tpot / 1e6)
            ms["latency"].append(latency / 1e6)
            ends.append(end)
            arrivals.append(arrival)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise _fail(f"unreadable ({exc.__class__.__name__}: {str(exc)[:80]})", path,
                    "fix the file") from None
    if not ends:
        raise _fail("no requests", path, "fix the file")
    side.ms = ms
    side.makespan_s = (max(ends) - min(arrivals)) / 1e9
    log = folder / "sim.log"
    if log.is_file():
        running = waiting = 0
        seen = False
        for lineno, line in enumerate(log.read_text(encoding="utf-8", errors="replace")
                                      .splitlines(), start=1):
            where = f"{log}:{lineno}"
            status = _STATUS.match(line.strip())
            if status:
                if seen:
                    side.running.append(running)
                    side.waiting.append(waiting)
                side.generation.append(_log_rate(status["g"], where))
                running = waiting = 0
                seen = True
                continue
            counts = _RUNNING.search(line)
            if counts and seen:
                running += _log_count(counts["r"], "running", where)
                waiting += _log_count(counts["w"], "waiting", where)
        if seen:
            side.running.append(running)
            side.waiting.append(waiting)
    return side


class QueueSeries(Observer):
    """Running and waiting requests of every instance at each log tick."""

    def __init__(self) -> None:
        self.instances: dict[int, Instance] = {}
        self.running: list[float] = []
        self.waiting: list[float] = []

    def on_batch_start(self, inst: Instance, batch: Batch, start_ns: int, end_ns: int,
                       costs: list) -> None:
        self.instances.setdefault(inst.index, inst)

    def on_window(self, time_ns: int, rates: tuple[float, float]) -> None:
        scheds = [i.scheduler for i in self.instances.values()]
        self.running.append(sum(len(getattr(s, "running", ())) for s in scheds))
        self.waiting.append(sum(len(getattr(s, "waiting", ())) for s in scheds))


@dataclass(frozen=True, slots=True)
class Example:
    """What a bench folder asks for."""

    config: Path
    dataset: Path
    num_req: int
    max_num_seqs: int | None
    max_num_batched_tokens: int | None
    settings_from: str
    prefix_caching: bool = False


def _sim_log_header(log: Path) -> dict[str, str]:
    header: dict[str, str] = {}
    if log.is_file():
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines()[:60]:
            match = _HEADER.search(line)
            if match:
                header[match["key"].strip()] = match["value"].strip()
    return header


def _header_limit(header: dict[str, str], key: str, where: str) -> int | None:
    """An engine limit from the sim.log header (plain ASCII digits), or None if absent."""
    if key not in header:
        return None
    text = header[key]
    if not (text.isascii() and text.isdigit()):
        raise _fail(f"'{key}' in the log header is {text[:40]!r}, not a whole number", where,
                    "fix the file")
    if len(text) > 10:  # beyond any 32-bit limit (and int() refuses 4300 digits)
        raise _fail(f"'{key}' in the log header has {len(text)} digits, beyond "
                    f"{SCHEDULER_LIMIT.describe()}", where, "fix the file")
    return checked_int(int(text), SCHEDULER_LIMIT, key, where, "fix the file")


def read_example(folder: Path, data: Path) -> Example:
    """The config, workload and engine limits of a bench folder (the real run's when present,
    else the existing simulator's)."""
    config = folder / "config.json"
    if not config.is_file():
        raise _fail("no config.json", folder, "pass a vllm_bench/<hardware>/<model> folder")
    header = _sim_log_header(folder / "outputs" / "sim.log")
    meta_path = folder / "vllm" / "meta.json"
    seqs = tokens = None
    if meta_path.is_file():
        meta = _read_json(meta_path)
        engine = _object(meta, "engine_kwargs", meta_path)
        dataset_name = meta.get("dataset_path")
        if not isinstance(dataset_name, str) or not dataset_name or "num_requests" not in meta:
            raise _fail("meta.json lacks dataset_path or num_requests", meta_path,
                        "fix the file")
        num_req = checked_int(meta["num_requests"], NUM_REQUESTS, "num_requests", str(meta_path),
                              "fix the file")
        seqs = _limit(engine, "max_num_seqs", meta_path)
        tokens = _limit(engine, "max_num_batched_tokens", meta_path)
        prefix = _object(meta, "kv_cache", meta_path).get("enable_prefix_caching", False)
        if not isinstance(prefix, bool):
            raise _fail(f"kv_cache.enable_prefix_caching must be true or false, got {prefix!r}",
                        meta_path, "fix the file")
        source = "vllm/meta.json"
    else:
        dataset_name = header.get("Dataset", "")
        num_req = None
        log = str(folder / "outputs" / "sim.log")
        seqs, tokens = (_header_limit(header, key, log)
                        for key in ("Max num seqs", "Max batched tokens"))
        prefix = header.get("Prefix caching", "").upper() == "ENABLED"
        source = "outputs/sim.log"
        if not dataset_name:
            raise _fail("no workload named", folder, "add vllm/meta.json or outputs/sim.log")
    dataset = data / "datasets_head" / Path(dataset_name).name
    if not dataset.is_file():
        raise _fail(f"workload {Path(dataset_name).name} not found", dataset,
                    "put the workload in DATA/datasets_head or pass --data")
    lines = sum(1 for line in dataset.read_bytes().splitlines() if line.strip())
    if num_req is None:
        num_req = lines
    elif num_req > lines:
        raise _fail(f"num_requests {num_req} but the workload {dataset.name} holds {lines}",
                    meta_path, "fix num_requests or the workload")
    return Example(config, dataset, num_req, seqs, tokens, source, prefix)


def our_side(example: Example, data: Path, extra: dict) -> tuple[Side, float]:
    """Run our simulator on the example; returns the side and the run's wall time."""
    queues = QueueSeries()
    options = dict(num_req=example.num_req, perf_models=str(data / "perf_models_head"),
                   log_interval=1.0, **extra)
    if example.max_num_seqs:
        options["max_num_seqs"] = example.max_num_seqs
    if example.max_num_batched_tokens:
        options["max_num_batched_tokens"] = example.max_num_batched_tokens
    # vLLM 0.19 caches prefixes by default; the run says whether it did.
    options["enable_prefix_caching"] = example.prefix_caching
    start = time.perf_counter()
    results = simulate(example.config, example.dataset, observers=[queues], **options)
    wall = time.perf_counter() - start
    side = Side("ours")
    side.ms = {"TTFT": [r.ttft / 1e6 for r in results.requests],
               "TPOT": [r.tpot / 1e6 for r in results.requests if r.output - r.input > 1],
               "latency": [r.latency / 1e6 for r in results.requests]}
    side.generation = [w.generation_tok_s for w in results.windows]
    side.running, side.waiting = queues.running, queues.waiting
    side.makespan_s = (max(r.end_time for r in results.requests)
                       - min(r.arrival for r in results.requests)) / 1e9
    return side, wall


def stat(values: list[float], which: float | None) -> float:
    """Mean (which None) or a percentile of `values`."""
    if not values:
        return float("nan")
    return sum(values) / len(values) if which is None else float(np.percentile(values, which))


def wape(ours: list[float], ref: list[float]) -> float:
    """Weighted absolute percentage error of a series against a reference (shorter padded 0)."""
    n = max(len(ours), len(ref))
    a = [*ours, *[0.0] * (n - len(ours))]
    b = [*ref, *[0.0] * (n - len(ref))]
    total = sum(abs(x) for x in b)
    return 100.0 * sum(abs(x - y) for x, y in zip(a, b, strict=True)) / total if total else 0.0


def _err(value: float, ref: float) -> str:
    return f"{100.0 * (value - ref) / ref:+.1f}%" if ref else "n/a"


def table(sides: list[Side]) -> str:
    """The comparison table: every side's statistic, errors against the first side."""
    ref, others = sides[0], sides[1:]
    width = 14
    head = f"{'metric':<18}{ref.name:>{width}}" + "".join(
        f"{s.name:>{width}}{'err':>9}" for s in others)
    lines = [head, "-" * len(head)]
    for metric in METRICS:
        for label, which in STATS:
            r = stat(ref.ms[metric], which)
            row = f"{f'{metric} {label} (ms)':<18}{r:>{width}.2f}"
            for s in others:
                v = stat(s.ms[metric], which)
                row += f"{v:>{width}.2f}{_err(v, r):>9}"
            lines.append(row)
    lines.append("-" * len(head))
    for label, attr in (("gen tok/s mean", "generation"), ("running mean", "running"),
                        ("waiting mean", "waiting")):
        series = getattr(ref, attr)
        r = stat(series, None)
        row = f"{label:<18}{r:>{width}.1f}"
        for s in others:
            v = stat(getattr(s, attr), None)
            row += f"{v:>{width}.1f}{_err(v, r):>9}"
        lines.append(row)
    row = f"{'makespan (s)':<18}{ref.makespan_s:>{width}.2f}"
    for s in others:
        row += f"{s.makespan_s:>{width}.2f}{_err(s.makespan_s, ref.makespan_s):>9}"
    lines.append(row)
    if ref.generation:
        row = f"{'gen series WAPE':<18}{'':>{width}}"
        for s in others:
            row += f"{wape(s.generation, ref.generation):>{width}.1f}%{'':>8}"
        lines.append(row)
    return "\n".join(lines)


@guarded
def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = OneLineParser(prog="python -m evaluation.bench", description=__doc__
                           .split("\n\n")[0])
    parser.add_argument("example", type=path_arg,
                        help="a DATA/vllm_bench/<hardware>/<model> folder")
    parser.add_argument("--data", type=path_arg, help="the data root holding datasets_head/ and "
                        "perf_models_head/ (default: three levels above EXAMPLE)")
    args = parser.parse_args(argv)
    try:
        folder = args.example
        if not folder.is_dir():
            raise _fail("no such folder", folder, "pass a vllm_bench/<hardware>/<model> folder")
        above = folder.resolve().parents
        if args.data is None and len(above) < 3:
            raise _fail("no data root three levels above the folder", folder,
                        "pass a DATA/vllm_bench/<hardware>/<model> folder or --data")
        data = args.data or above[2]
        example = read_example(folder, data)
        existing = existing_side(folder / "outputs") \
            if (folder / "outputs" / "sim.csv").is_file() else None
        real = real_side(folder / "vllm", example.num_req) if (folder / "vllm").is_dir() \
            else None
        ours, wall = our_side(example, data, {})
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sides = [s for s in (real, existing, ours) if s is not None]
    print(f"bench {folder}: {example.num_req} requests from {example.dataset.name}, "
          f"engine limits from {example.settings_from} (max_num_seqs "
          f"{example.max_num_seqs or 'default'}, max_num_batched_tokens "
          f"{example.max_num_batched_tokens or 'default'}, prefix caching "
          f"{'on' if example.prefix_caching else 'off'}); our run took {wall:.2f} s")
    print(table(sides))
    print_flag_warnings(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
