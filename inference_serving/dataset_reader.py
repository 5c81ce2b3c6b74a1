"""Streaming reader for request traces in the LLMServingSim jsonl format."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from inference_serving.request import Request
from llmsim_core.errors import InputError


def _int_field(record: dict, key: str, where: str, minimum: int) -> int:
    if key not in record:
        raise InputError(f"missing field '{key}'", where, "every line needs input_toks, "
                         "output_toks and arrival_time_ns")
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise InputError(f"field '{key}' must be a number >= {minimum}, got {value!r}", where,
                         "fix the dataset line")
    return int(value)


def request_from_record(record: object, rid: int, where: str) -> Request:
    """A request from one trace record (a dict with input_toks, output_toks, arrival_time_ns)."""
    if not isinstance(record, dict):
        raise InputError("record is not a JSON object", where, "fix the record")
    return Request(rid=rid, arrival=_int_field(record, "arrival_time_ns", where, 0),
                   prompt=_int_field(record, "input_toks", where, 1),
                   output=_int_field(record, "output_toks", where, 1))


def sort_by_arrival(requests: list[Request]) -> bool:
    """Sort stably by arrival time in place; return True if the order changed."""
    unsorted = any(a.arrival > b.arrival for a, b in zip(requests, requests[1:], strict=False))
    if unsorted:
        requests.sort(key=lambda r: r.arrival)
    return unsorted


def iter_requests(path: Path, limit: int) -> Iterator[Request]:
    """Yield the first `limit` requests of a jsonl trace, line by line (ids = line index)."""
    if not path.is_file():
        raise InputError("dataset not found", str(path), "pass an existing .jsonl to --dataset")
    with path.open("rb") as handle:
        rid = 0
        for lineno, line in enumerate(handle, start=1):
            if rid >= limit:
                return
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise InputError("malformed JSON line", where, "each line must be one JSON "
                                 "object") from None
            if not isinstance(record, dict):
                raise InputError("line is not a JSON object", where, "fix the dataset line")
            yield request_from_record(record, rid, where)
            rid += 1


def load_requests(path: Path, limit: int) -> tuple[list[Request], bool]:
    """Read up to `limit` requests, sorted stably by arrival; also say if the file was unsorted."""
    requests = list(iter_requests(path, limit))
    if not requests:
        raise InputError("dataset has no requests", str(path), "check the file and --num-req")
    return requests, sort_by_arrival(requests)
