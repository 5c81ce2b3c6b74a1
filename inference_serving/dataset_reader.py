"""Streaming reader for request traces in the LLMServingSim jsonl format."""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from pathlib import Path

from inference_serving.request import Request
from llmsim_core.bounds import ARRIVAL_NS, MAX_STATUS_WINDOWS, TOKENS, checked, checked_int
from llmsim_core.errors import InputError
from llmsim_core.strict_json import closest, loads

FIELDS = ("input_toks", "output_toks", "arrival_time_ns")
_FIX = "fix the dataset line"


def _field(record: dict, key: str, where: str) -> object:
    if key not in record:
        near = closest(key, [k for k in record if k not in FIELDS])
        fix = f"rename '{near}' to '{key}'" if near else \
            "every line needs input_toks, output_toks and arrival_time_ns"
        raise InputError(f"missing field '{key}'", where, fix)
    return record[key]


def _check_ids(record: dict, key: str, count: int, count_key: str, where: str) -> None:
    """A token id list, when present, holds one integer per token of `count_key`."""
    ids = record.get(key)
    if ids is None:
        return
    if not isinstance(ids, list) or not set(map(type, ids)) <= {int}:
        raise InputError(f"field '{key}' must be a list of integer token ids", where, _FIX)
    if len(ids) != count:
        raise InputError(f"field '{key}' has {len(ids)} ids but {count_key} is {count}", where,
                         f"make them agree or drop '{key}'")


def parse_line(line: bytes, where: str, max_len: int | None = None,
               keep_ids: bool = False) -> Request | None:
    """One request from one trace line (id unset: -1), or None for a blank line."""
    if not line.strip():
        return None
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte 0x{line[exc.start]:02x})", where,
                         "save the dataset as UTF-8") from None
    request = request_from_record(loads(text, where, "each line must be one JSON object"), -1,
                                  where, max_len, keep_ids)
    return request


def request_from_record(record: object, rid: int, where: str,
                        max_len: int | None = None, keep_ids: bool = False) -> Request:
    """A request from one trace record (a dict with input_toks, output_toks, arrival_time_ns,
    optionally the token id lists), validated like a dataset line; `keep_ids` (prefix caching)
    keeps the prompt ids, then the output ids, as the request's token ids."""
    if not isinstance(record, dict):
        raise InputError("record is not a JSON object", where, _FIX)
    prompt = checked_int(_field(record, "input_toks", where), TOKENS, "input_toks", where, _FIX)
    output = checked_int(_field(record, "output_toks", where), TOKENS, "output_toks", where, _FIX)
    # formats.md §3: a float arrival is accepted and truncated to whole nanoseconds.
    arrival = int(checked(_field(record, "arrival_time_ns", where), ARRIVAL_NS,
                          "arrival_time_ns", where, _FIX))
    if max_len is not None and prompt + output > max_len:
        raise InputError(f"input_toks + output_toks = {prompt + output} exceeds the model's "
                         f"maximum length {max_len} (max_position_embeddings)", where,
                         "shorten the request or serve a model with a longer context")
    _check_ids(record, "input_tok_ids", prompt, "input_toks", where)
    _check_ids(record, "output_tok_ids", output, "output_toks", where)
    request = Request(rid=rid, arrival=arrival, prompt=prompt, output=output)
    if keep_ids and record.get("input_tok_ids") is not None:
        request.token_ids = array("q", record["input_tok_ids"])
        request.token_ids.extend(record.get("output_tok_ids") or ())
    return request


def iter_requests(path: Path, limit: int, max_len: int | None = None,
                  keep_ids: bool = False) -> Iterator[Request]:
    """Yield the first `limit` requests of a jsonl trace, line by line (ids = line index)."""
    if not path.is_file():
        raise InputError("dataset not found", str(path), "pass an existing .jsonl to --dataset")
    with path.open("rb") as handle:
        rid = 0
        for lineno, line in enumerate(handle, start=1):
            if rid >= limit:
                return
            request = parse_line(line, f"{path}:{lineno}", max_len, keep_ids)
            if request is None:
                continue
            request.rid = rid
            yield request
            rid += 1


def trace_has_more(path: Path, count: int) -> bool:
    """True when the trace has more than `count` non-blank lines (bytes only, no parsing)."""
    with path.open("rb") as handle:
        seen = 0
        for line in handle:
            if line.strip():
                seen += 1
                if seen > count:
                    return True
    return False


def load_requests(path: Path, limit: int, max_len: int | None = None,
                  interval_ns: int | None = None,
                  keep_ids: bool = False) -> tuple[list[Request], bool]:
    """Read up to `limit` requests, sorted stably by arrival; also say if the file was unsorted.

    `max_len` bounds prompt + output tokens; `interval_ns` (the status window) bounds the
    number of windows the clock steps through before the last arrival; `keep_ids` keeps the
    token ids (prefix caching).
    """
    requests = list(iter_requests(path, limit, max_len, keep_ids))
    if not requests:
        raise InputError("dataset has no requests", str(path), "check the file and --num-req")
    unsorted = sort_by_arrival(requests)
    check_windows(requests, interval_ns, str(path))
    return requests, unsorted


def sort_by_arrival(requests: list[Request]) -> bool:
    """Sort stably by arrival time in place; return True if the order changed."""
    unsorted = any(a.arrival > b.arrival for a, b in zip(requests, requests[1:], strict=False))
    if unsorted:
        requests.sort(key=lambda r: r.arrival)
    return unsorted


def check_windows(requests: list[Request], interval_ns: int | None, where: str) -> None:
    """The clock must not step through more status windows than a run can print."""
    last = requests[-1].arrival
    if interval_ns is not None and last / interval_ns > MAX_STATUS_WINDOWS:
        raise InputError(f"the last arrival ({last} ns) lies {last // interval_ns} status windows "
                         f"into the run (at most {MAX_STATUS_WINDOWS}, each printed, or the run "
                         "takes hours)", where,
                         f"raise --log-interval to at least {last / MAX_STATUS_WINDOWS / 1e9:.3g} s"
                         " or shorten the trace")
