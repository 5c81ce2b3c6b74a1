"""Reader for request traces in the LLMServingSim jsonl format: every line checked up front,
the trace kept as compact columns (`RequestTable`)."""

from __future__ import annotations

import re
from array import array
from pathlib import Path

from inference_serving.request import Request
from inference_serving.request_table import RequestTable
from llmsim_core.bounds import (
    ARRIVAL_NS,
    INT32_MAX,
    TOKENS,
    checked,
    checked_int,
    status_window_limit,
)
from llmsim_core.errors import InputError
from llmsim_core.strict_json import MISSPELT, closest, loads

FIELDS = ("input_toks", "output_toks", "arrival_time_ns")
KNOWN_FIELDS = frozenset((*FIELDS, "input_tok_ids", "output_tok_ids"))
_FIX = "fix the dataset line"
# The line every generator writes: the three fields in order, plain integers. Such a line is
# read without the JSON parser (a third of the time per line); any other line, and one whose
# numbers are out of range, takes the full parse and its checks.
_NUMBER = rb"[ \t]*(0|[1-9][0-9]{0,15})[ \t]*"
_CANONICAL = re.compile(rb'[ \t]*\{[ \t]*"input_toks"[ \t]*:' + _NUMBER
                        + rb',[ \t]*"output_toks"[ \t]*:' + _NUMBER
                        + rb',[ \t]*"arrival_time_ns"[ \t]*:' + _NUMBER + rb"\}[ \t]*\r?\n?")
# The same line with id lists as json.dumps writes them ("input_tok_ids": [1, 2, 3], then
# optionally "output_tok_ids") is read with bytes operations too; ids of ten or more digits, a
# leading 0 and any other spacing take the full parse.
_WITH_IDS = re.compile(_CANONICAL.pattern[:_CANONICAL.pattern.rindex(rb"\}")]
                       + rb',[ \t]*"input_tok_ids"[ \t]*:[ \t]*\[')
_OUTPUT_IDS = re.compile(rb'\][ \t]*,[ \t]*"output_tok_ids"[ \t]*:[ \t]*\[')
_END = re.compile(rb"\][ \t]*\}[ \t]*\r?\n?")
_AS_D = bytes.maketrans(b"0123456789", b"dddddddddd")  # ten d's in a row: an id of 10+ digits


def _id_count(listed: bytes) -> int | None:
    """The number of ids in a json.dumps-style list body ("1, 2, 3"), all below 10**9 (inside
    the id range); None for anything else."""
    if not listed:
        return 0
    commas = listed.count(b",")
    if listed.count(b", ") != commas or listed.count(b" ") != commas \
            or listed.translate(None, b"0123456789, ") or listed.startswith((b"0", b",")) \
            or listed.endswith(b" ") or b", ," in listed or b" 0" in listed \
            or b"dddddddddd" in listed.translate(_AS_D):
        return None
    return commas + 1


def _ids(listed: bytes) -> list[int]:
    """The ids of a list body checked by `_id_count`."""
    return list(map(int, listed.split(b", "))) if listed else []


def _plain_ids(line: bytes) -> tuple[re.Match, bytes, int, bytes, int | None] | None:
    """The header match, then the prompt and the output id list bodies each with its number
    of ids (None without output ids), of a generator-written line with id lists; None for any
    other line."""
    head = _WITH_IDS.match(line)
    if head is None:
        return None
    close = line.find(b"]", head.end())
    if close < 0:
        return None
    prompt_ids = line[head.end():close]
    n_prompt = _id_count(prompt_ids)
    if n_prompt is None:
        return None
    if _END.fullmatch(line, close):
        return head, prompt_ids, n_prompt, b"", None
    more = _OUTPUT_IDS.match(line, close)
    if more is None:
        return None
    close = line.find(b"]", more.end())
    if close < 0 or not _END.fullmatch(line, close):
        return None
    output_ids = line[more.end():close]
    n_output = _id_count(output_ids)
    return None if n_output is None else (head, prompt_ids, n_prompt, output_ids, n_output)


def _plain_fields(line: bytes, max_len: int | None,
                  keep_ids: bool) -> tuple[int, int, int, array | None] | None:
    """`parse_line`'s result for a generator-written line whose numbers are all in range,
    read without the JSON parser; None for any other line (the full parse then says why)."""
    plain = _CANONICAL.fullmatch(line)
    with_ids = None if plain is not None else _plain_ids(line)
    if with_ids is not None:
        plain, prompt_ids, n_prompt, output_ids, n_output = with_ids
    if plain is None:
        return None
    n_in, n_out, at = int(plain[1]), int(plain[2]), int(plain[3])
    if with_ids is not None and (n_prompt != n_in or n_output not in (None, n_out)):
        return None
    if not (TOKENS.low <= n_in <= TOKENS.high and TOKENS.low <= n_out <= TOKENS.high
            and at <= ARRIVAL_NS.high and (max_len is None or n_in + n_out <= max_len)):
        return None
    if not keep_ids or with_ids is None:
        return n_in, n_out, at, None
    return n_in, n_out, at, array("q", _ids(prompt_ids) + _ids(output_ids))


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
    # Ids index a vocabulary: negative or beyond 32 bits is no token (and beyond 64 bits would
    # not fit the id arrays of prefix caching).
    if ids and (min(ids) < 0 or max(ids) > INT32_MAX):
        bad = min(ids) if min(ids) < 0 else max(ids)
        raise InputError(f"field '{key}' holds token id {bad}, outside [0, {INT32_MAX}]", where,
                         "use the tokenizer's vocabulary indices")


def parse_line(line: bytes, where: str, max_len: int | None = None,
               keep_ids: bool = False) -> tuple[int, int, int, array | None] | None:
    """(prompt, output, arrival ns, token ids if `keep_ids`) of one trace line, or None for a
    blank line."""
    if not line.strip():
        return None
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte 0x{line[exc.start]:02x})", where,
                         "save the dataset as UTF-8") from None
    record = loads(text, where, "each line must be one JSON object")
    prompt, output, arrival = record_fields(record, where, max_len)
    return prompt, output, arrival, token_ids(record) if keep_ids else None


def token_ids(record: dict) -> array | None:
    """The prompt ids, then the output ids (prefix caching); None without prompt ids."""
    if record.get("input_tok_ids") is None:
        return None
    ids = array("q", record["input_tok_ids"])
    ids.extend(record.get("output_tok_ids") or ())
    return ids


def record_fields(record: object, where: str, max_len: int | None = None) -> tuple[int, int, int]:
    """(prompt, output, arrival ns) of one trace record (a dict with input_toks, output_toks,
    arrival_time_ns, optionally the token id lists), validated like a dataset line."""
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
    if not record.keys() <= KNOWN_FIELDS:
        _check_misspelt(record, where)
    return prompt, output, arrival


def _check_misspelt(record: dict, where: str) -> None:
    """Other fields are ignored (formats.md §3), but one a letter or two away from a field
    this reader knows is a misspelling that would silently drop that field's data."""
    absent = KNOWN_FIELDS - record.keys()
    for key in record.keys() - KNOWN_FIELDS:
        near = closest(key, absent, MISSPELT)
        if near is not None:
            raise InputError(f"field '{key}' looks like a misspelt '{near}' (which is "
                             "missing)", where, f"rename it to '{near}'")


def request_from_record(record: object, rid: int, where: str,
                        max_len: int | None = None) -> Request:
    """A request from one trace record, validated like a dataset line."""
    prompt, output, arrival = record_fields(record, where, max_len)
    return Request(rid=rid, arrival=arrival, prompt=prompt, output=output)


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
                  keep_ids: bool = False, instances: int = 1) -> tuple[RequestTable, bool]:
    """Read and check up to `limit` requests (ids = line index among non-blank lines) into a
    table sorted stably by arrival; also say if the file was unsorted. `keep_ids` (prefix
    caching) keeps each request's token ids.

    `max_len` bounds prompt + output tokens; `interval_ns` (the status window) bounds the
    number of windows the clock steps through before the last arrival (fewer for clusters of
    many `instances`); `keep_ids` keeps the token ids (prefix caching).
    """
    if not path.is_file():
        raise InputError("dataset not found", str(path), "pass an existing .jsonl to --dataset")
    arrival, prompt, output = array("q"), array("q"), array("q")
    ids: list[array | None] = []
    with path.open("rb") as handle:
        for lineno, line in enumerate(handle, start=1):
            if len(arrival) >= limit:
                break
            fields = _plain_fields(line, max_len, keep_ids) \
                or parse_line(line, f"{path}:{lineno}", max_len, keep_ids)
            if fields is not None:
                prompt.append(fields[0])
                output.append(fields[1])
                arrival.append(fields[2])
                if keep_ids:
                    ids.append(fields[3])
    if not arrival:
        raise InputError("dataset has no requests", str(path), "check the file and --num-req")
    table, unsorted = RequestTable.from_columns(arrival, prompt, output,
                                                ids if keep_ids else None)
    check_windows(int(table.arrival[-1]), interval_ns, str(path), instances)
    return table, unsorted


def sort_by_arrival(requests: list[Request]) -> bool:
    """Sort stably by arrival time in place; return True if the order changed."""
    unsorted = any(a.arrival > b.arrival for a, b in zip(requests, requests[1:], strict=False))
    if unsorted:
        requests.sort(key=lambda r: r.arrival)
    return unsorted


def check_windows(last: int, interval_ns: int | None, where: str, instances: int = 1) -> None:
    """The clock must not step through more status windows than a run can print; `last` is
    the last arrival (ns), `instances` the cluster's instance count (a line each per block)."""
    limit = status_window_limit(instances)
    if interval_ns is not None and last / interval_ns > limit:
        raise InputError(f"the last arrival ({last} ns) lies {last // interval_ns} status windows "
                         f"into the run (at most {limit} for {instances} instance(s), each "
                         "printed, or the run takes hours)", where,
                         f"raise --log-interval to at least {last / limit / 1e9:.3g} s"
                         " or shorten the trace")
