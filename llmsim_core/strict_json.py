"""Strict reading of user files: UTF-8 only, JSON without NaN, Infinity or duplicate keys.

Python's `json` accepts `NaN`, `Infinity`, numbers that overflow to infinity and repeated keys
(the last silently wins); each would later surface as a traceback or as a run that never ends.
Every user file is read through here so all of them fail the same way: one `InputError`.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from llmsim_core.errors import InputError


class _Rejected(ValueError):
    """Raised inside the json hooks; converted to an InputError naming the file."""


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
    raise _Rejected(f"non-finite number {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Rejected(f"number {text[:24]} is beyond the float range (about ±1.8e308)")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _Rejected(f"duplicate key '{key}'")
        obj[key] = value
    return obj


def loads(text: str | bytes, where: str, fix: str) -> Any:
    """Parse one JSON document; reject NaN, Infinity, overflowing numbers and repeated keys."""
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float,
                          object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
                         where, fix) from None
    except _Rejected as exc:
        raise InputError(str(exc), where, fix) from None
    except RecursionError:
        raise InputError("JSON nested too deeply", where, fix) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (offset {exc.start})", where,
                         "save the file as UTF-8") from None
    except ValueError as exc:  # an integer literal longer than Python's digit limit
        raise InputError(f"unreadable number ({exc})", where, fix) from None


def load_file(path: Path, fix: str) -> Any:
    """Read and strictly parse one JSON file."""
    return loads(read_text(path, fix), str(path), fix)


def closest(key: str, known: Collection[str]) -> str | None:
    """The known key nearest to a misspelt one, if any is close."""
    matches = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


def check_keys(obj: Mapping[str, Any], known: Collection[str], where: str, path: str) -> None:
    """Reject a key not in `known`, naming the closest known key."""
    for key in obj:
        if key not in known:
            near = closest(key, known)
            fix = f"did you mean '{near}'?" if near else \
                f"remove it (known keys here: {', '.join(sorted(known))})"
            raise InputError(f"unknown key '{key}'", f"{where}{key} in {path}", fix)
