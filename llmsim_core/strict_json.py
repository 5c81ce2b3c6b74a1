"""Strict reading of user files: UTF-8 only, JSON without NaN, Infinity or duplicate keys.

Python's `json` accepts `NaN`, `Infinity`, numbers that overflow to infinity and repeated keys
(the last silently wins); each would later surface as a traceback or as a run that never ends.
Every user file is read through here so all of them fail the same way: one `InputError`.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from llmsim_core.errors import InputError


class _Rejected(ValueError):
    """Raised inside the json hooks; converted to an InputError naming the file and place."""

    def __init__(self, what: str, token: str, nth: int = 1) -> None:
        super().__init__(what)
        self.token = token  # the offending text, to find it again for the error's location
        self.nth = nth


_KEY_BEFORE = re.compile(r'"((?:[^"\\]|\\.)*)"\s*:\s*$')


def _locate(text: str, token: str, nth: int) -> str:
    """`line L column C (key 'k')` of the nth occurrence of `token`, as best the text shows.

    The json hooks see values, not positions; the offending literal is found again in the text.
    """
    at = -1
    for _ in range(nth):
        at = text.find(token, at + 1)
        if at < 0:
            return ""
    line = text.count("\n", 0, at) + 1
    column = at - (text.rfind("\n", 0, at) + 1) + 1
    key = _KEY_BEFORE.search(text[max(0, at - 200):at])
    return f" at line {line} column {column}" + (f" (key '{key.group(1)}')" if key else "")


def read_text(path: Path, fix: str) -> str:
    """The file's text, decoded as UTF-8 (a leading byte-order mark is allowed)."""
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise InputError("expected a file, found a directory", str(path), fix) from None
    except OSError as exc:
        raise InputError(f"cannot read the file ({exc.strerror})", str(path), fix) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
                         str(path), "save the file as UTF-8") from None


def _reject_constant(name: str) -> float:
    raise _Rejected(f"non-finite number {name} (numbers must be finite)", name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Rejected(f"number {text[:24]} is beyond the float range (about ±1.8e308)", text)
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _Rejected(f"duplicate key '{key}'", json.dumps(key), 2)
        obj[key] = value
    return obj


def _check_strings(value: Any) -> None:
    """Reject a string (key or value) holding a lone surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack += item.keys()
            stack += item.values()
        elif isinstance(item, list):
            stack += item
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                escape = f"\\u{ord(item[exc.start]):04x}"
                raise _Rejected(f"string with a lone surrogate {escape} (not valid Unicode)",
                                escape) from None


def loads(text: str | bytes, where: str, fix: str) -> Any:
    """Parse one JSON document; reject NaN, Infinity, overflowing numbers and repeated keys."""
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float,
                           object_pairs_hook=_unique_keys)
        # A \u escape may name half a surrogate pair: no UTF-8 text can hold that string.
        if (b"\\u" if isinstance(text, bytes) else "\\u") in text:
            _check_strings(value)
        return value
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
                         where, fix) from None
    except _Rejected as exc:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        raise InputError(f"{exc}{_locate(text, exc.token, exc.nth)}", where, fix) from None
    except RecursionError:
        raise InputError("JSON nested too deeply", where, fix) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (offset {exc.start})", where,
                         "save the file as UTF-8") from None
    except ValueError:  # an integer literal longer than Python's 4300-digit limit
        raise InputError("a number with thousands of digits", where, fix) from None


def load_file(path: Path, fix: str) -> Any:
    """Read and strictly parse one JSON file."""
    return loads(read_text(path, fix), str(path), fix)


MISSPELT = 0.85  # similarity (difflib) above which an unknown key is a known one misspelt


def closest(key: str, known: Collection[str], cutoff: float = 0.6) -> str | None:
    """The known key nearest to a misspelt one, if any is close (difflib similarity of at
    least `cutoff`)."""
    matches = difflib.get_close_matches(key, sorted(known), n=1, cutoff=cutoff)
    return matches[0] if matches else None


def check_keys(obj: Mapping[str, Any], known: Collection[str], where: str, path: str) -> None:
    """Reject a key not in `known`, naming the closest known key."""
    for key in obj:
        if key not in known:
            near = closest(key, known)
            fix = f"did you mean '{near}'?" if near else \
                f"remove it (known keys here: {', '.join(sorted(known))})"
            raise InputError(f"unknown key '{key}'", f"key '{where}{key}' in {path}", fix)
