"""Output files as observers: the per-request CSV, the throughput series and the metrics JSON,
each written atomically when the run completes."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from inference_serving.fleet import FleetSamples
from inference_serving.instance import Instance
from inference_serving.observers import Observer
from inference_serving.report import summary_numbers
from inference_serving.request import Request
from inference_serving.scheduler.base import Batch
from inference_serving.simulator import SimResult
from llmsim_core.atomic_write import atomic_writer, temp_prefix, write_atomic

COPY_CHUNK = 1 << 20
CSV_COLUMNS = ("instance id", "request id", "model", "input", "output", "arrival", "end_time",
               "latency", "queuing_delay", "TTFT", "TPOT", "ITL")


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One row of the per-request CSV (formats.md §6.1); times in ns.

    `output` is the final sequence length (prompt + generated tokens), as in the CSV.
    """

    instance_id: int
    request_id: int
    model: str
    input: int
    output: int
    arrival: int
    end_time: int
    latency: int
    queuing_delay: int
    ttft: int
    tpot: int
    itl: tuple[int, ...]

    @classmethod
    def of(cls, r: Request, model: str, routing_time_instance_id: bool) -> RequestRecord:
        """The record of a finished request; the existing tool names the routing-time
        instance when `routing_time_instance_id` is set."""
        instance = r.routed_instance if routing_time_instance_id else r.instance
        return cls(instance, r.rid, model, r.prompt, r.prompt + r.output, r.arrival, r.end,
                   r.latency, r.first_scheduled - r.arrival, r.ttft, r.tpot, tuple(r.itl))

    def csv_row(self) -> tuple:
        """The CSV cells, ITL as a bracketed list."""
        return (self.instance_id, self.request_id, self.model, self.input, self.output,
                self.arrival, self.end_time, self.latency, self.queuing_delay, self.ttft,
                self.tpot, str(list(self.itl)))


def csv_cell(text: str) -> str:
    """`text` as one CSV cell (quoted when the csv module would quote it)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow([text])
    return out.getvalue()[:-1]


class RequestCsv(Observer):
    """Streams each finished request's row out as it finishes, then completes the CSV
    atomically (instances in order, each in completion order).

    The header and instance 0's rows go straight into an unnamed file beside the output; the
    other instances' rows are spooled and appended at the end, and the file is then linked
    into place (where the platform cannot link an unnamed file, everything is copied into a
    temporary file that is renamed). A run that fails leaves nothing behind.

    Rows are formatted here rather than through `csv.writer`: every cell is an integer but the
    model name (quoted once per instance) and the ITL list, whose `[a, b]` form holds the
    delimiter whenever it has two or more gaps (then quoted, as the csv module does).
    """

    def __init__(self, path: Path, routing_time_instance_id: bool = False) -> None:
        self.path = path
        self.routing_time_instance_id = routing_time_instance_id
        self.spools: dict[int, tuple[TextIO, str]] = {}
        self.headed = False  # instance 0's spool starts with the header
        self.linkable = False  # ... and is an unnamed file beside the output

    def _spool(self, inst: Instance) -> tuple[TextIO, str]:
        handle = None
        if inst.index == 0:
            handle = unnamed_file(self.path.parent)
            self.linkable = handle is not None
        if handle is None:
            handle = tempfile.TemporaryFile("w+", newline="")
        if inst.index == 0:
            handle.write(HEADER)
            self.headed = True
        spool = self.spools[inst.index] = (handle, csv_cell(inst.model.name))
        return spool

    def on_batch_end(self, inst: Instance, batch: Batch, end_ns: int,
                     finished: list[Request]) -> None:
        """Append the rows of the requests `batch` finished."""
        if not finished:
            return
        spool = self.spools.get(inst.index)
        if spool is None:
            spool = self._spool(inst)
        handle, model = spool
        routed = self.routing_time_instance_id
        lines = []
        for r in finished:
            itl = r.itl_cell()
            if len(r.itl) > 1:
                itl = f'"{itl}"'
            arrival = r.arrival
            lines.append(f"{r.routed_instance if routed else r.instance},{r.rid},{model},"
                         f"{r.prompt},{r.prompt + r.output},{arrival},{r.end},{r.end - arrival},"
                         f"{r.first_scheduled - arrival},{r.first_token - arrival},{r.tpot},"
                         f"{itl}\n")
        handle.write("".join(lines))

    def on_finish(self, result: SimResult) -> None:
        """Complete the file: the header, then every instance's rows."""
        handles = [self.spools[index][0] for index in sorted(self.spools)]
        headed = self.headed
        self.spools.clear()
        if self.linkable and link_into_place(handles[0], handles[1:], self.path):
            return
        with atomic_writer(self.path) as out:
            if not headed:
                out.write(HEADER)
            append_files(out, handles)


HEADER = ",".join(CSV_COLUMNS) + "\n"


def append_files(out: TextIO, handles: list[TextIO]) -> None:
    """Append the whole content of each text handle in `handles` to `out`, closing them
    (the kernel copies the bytes where it can)."""
    out.flush()
    for handle in handles:
        handle.flush()
        size = os.fstat(handle.fileno()).st_size
        offset = 0
        try:
            while offset < size:
                sent = os.sendfile(out.fileno(), handle.fileno(), offset, size - offset)
                if not sent:
                    break
                offset += sent
        except OSError:
            handle.buffer.seek(offset)
            shutil.copyfileobj(handle.buffer, out.buffer, COPY_CHUNK)
        out.flush()
        handle.close()


def unnamed_file(folder: Path) -> TextIO | None:
    """A text handle on a file in `folder` that has no name until `link_into_place` gives it
    one (it vanishes if the process ends first); None where the platform has no such files."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or not folder.is_dir():
        return None
    try:
        descriptor = os.open(folder, flag | os.O_RDWR, 0o644)
    except OSError:
        return None
    return os.fdopen(descriptor, "w+", newline="")


def link_into_place(head: TextIO, rest: list[TextIO], path: Path) -> bool:
    """Give the unnamed file `head`, with `rest` appended, the name `path` (replacing any
    file there); False, with nothing changed, where the platform cannot name it."""
    head.flush()
    try:
        descriptors = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        for attempt in range(100):
            temp = path.parent / f"{temp_prefix(path)}{os.getpid()}.{attempt}.tmp"
            try:
                os.link(str(head.fileno()), temp, src_dir_fd=descriptors)
            except FileExistsError:
                continue
            except OSError:
                return False
            break
        else:
            return False
    finally:
        os.close(descriptors)
    try:
        append_files(head, rest)
        head.close()
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return True


class ThroughputCsv(Observer):
    """The throughput series: one row per closed log window, rates in tokens/s."""

    def __init__(self, path: Path, interval_s: float) -> None:
        self.path = path
        self.interval_s = interval_s
        self.windows = array("d")  # (prompt, generation) pairs, flattened

    def on_window(self, time_ns: int, rates: tuple[float, float]) -> None:
        """Keep the window's rates."""
        self.windows.extend(rates)

    def on_finish(self, result: SimResult) -> None:
        """Write the series."""
        write_atomic(self.path, throughput_csv(self.interval_s, self.windows))


class MetricsJson(Observer):
    """The summary's figures as JSON, with the fleet block."""

    def __init__(self, path: Path, fleet: FleetSamples) -> None:
        self.path = path
        self.fleet = fleet

    def on_finish(self, result: SimResult) -> None:
        """Write the summary."""
        write_atomic(self.path, metrics_json(summary_numbers(result, self.fleet)))


def throughput_csv(interval_s: float, windows: array) -> str:
    """Throughput time series: one row per periodic window (`windows` holds the (prompt,
    generation) rates in tokens/s, flattened)."""
    lines = ["time_s,prompt_tok_s,generation_tok_s"]
    rates = windows.tolist()
    for k, (prompt, gen) in enumerate(zip(rates[::2], rates[1::2], strict=True), start=1):
        lines.append(f"{k * interval_s:g},{prompt},{gen}")
    return "\n".join(lines) + "\n"


def metrics_json(summary: dict) -> str:
    """Machine-readable metrics, stable key order."""
    return json.dumps(summary, indent=2, sort_keys=True) + "\n"
