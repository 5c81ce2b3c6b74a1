"""Parsers for the LLMServingSim profile files (layers.csv, prediction grids, attention.csv)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmsim_core.bounds import INT32_MAX, PROFILE_NS, checked
from llmsim_core.errors import InputError
from llmsim_core.strict_json import read_text

LAYERS_HEADER = ("layer_name", "input", "kv_cache", "tp_size", "latency(ns)")


@dataclass(frozen=True, slots=True)
class LayerCurve:
    """Measured latency of one operator against token count (sorted, unique tokens)."""

    tokens: np.ndarray
    latency: np.ndarray


@dataclass(frozen=True, slots=True)
class Grid:
    """A dense regular 2-D table: values[i, j] at (axis0[i], axis1[j])."""

    axis0: np.ndarray
    axis1: np.ndarray
    values: np.ndarray


_FIX = "regenerate or fix the profile file"


def _bad(path: Path, what: str, fix: str = _FIX) -> InputError:
    return InputError(what, str(path), fix)


def _rows(path: Path) -> list[list[str]]:
    """All CSV rows of a UTF-8 profile file."""
    try:
        return list(csv.reader(io.StringIO(read_text(path, _FIX), newline="")))
    except csv.Error as exc:
        raise _bad(path, f"unreadable CSV ({exc})") from None


def _count(text: str, column: str, where: str, minimum: int) -> int:
    """A whole-number column (tokens, batch, TP) of at least `minimum` (and within int32: no
    profiled kernel sees more), in plain ASCII digits."""
    digits = text.strip().removeprefix("-")
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"not a whole number: {text!r}")
    value = int(text)
    if not minimum <= value <= INT32_MAX:
        raise InputError(f"'{column}' must be an integer in [{minimum}, {INT32_MAX}], got "
                         f"{value}", where, _FIX)
    return value


def read_layers(path: Path, tp: int,
                warn: Callable[[str], None] = lambda msg: None) -> dict[str, LayerCurve]:
    """Parse layers.csv into one curve per operator for TP degree `tp`; of an operator measured
    twice at one token count the first row is used, and `warn` hears when the two disagree.

    The columns are converted with numpy; only a table that fails a check is walked row by
    row, to name the first bad line."""
    if not path.is_file():
        raise _bad(path, "missing profile table layers.csv",
                   "profile this hardware/model/TP or pick another --perf-models root")
    rows = _rows(path)
    header = tuple(rows[0]) if rows else ()
    missing = [c for c in LAYERS_HEADER if c not in header]
    if missing:
        raise _bad(path, f"missing column(s) {', '.join(missing)}",
                   f"the header must be {','.join(LAYERS_HEADER)}")
    col = {name: header.index(name) for name in LAYERS_HEADER}
    body = [row for row in rows[1:] if row]
    curves = _layer_columns(path, body, col, tp, warn) if body else None
    if curves is None:
        _check_rows(path, rows, col)  # raises with the first bad line
        curves = {}
    if not curves:
        raise _bad(path, f"no rows with tp_size {tp}", "use the tp<N> folder matching the "
                   "instance's TP degree")
    return curves


def _layer_columns(path: Path, body: list[list[str]], col: dict[str, int], tp: int,
                   warn: Callable[[str], None]) -> dict[str, LayerCurve] | None:
    """Curves from whole columns, or None when any value fails a check."""
    if min(map(len, body)) <= max(col.values()):
        return None
    digits = [row[col["input"]] for row in body] + [row[col["kv_cache"]] for row in body]
    if not all(text.isascii() and text.isdigit() for text in digits):
        return None  # a sign, a fraction, 1_0 or a non-ASCII digit: the row walk names it
    try:
        names = np.array([row[col["layer_name"]] for row in body])
        tokens = np.array([row[col["input"]] for row in body], dtype=np.int64)
        tps = np.array([row[col["tp_size"]] for row in body], dtype=np.int64)
        latency = np.array([row[col["latency(ns)"]] for row in body], dtype=np.float64)
    except (ValueError, OverflowError):
        return None
    if (tokens < 1).any() or (tokens > INT32_MAX).any() or (tps < 1).any() or \
            (tps > INT32_MAX).any() or not np.isfinite(latency).all() or \
            (latency < PROFILE_NS.low).any() or (latency > PROFILE_NS.high).any():
        return None
    mine = tps == tp
    names, tokens, latency = names[mine], tokens[mine], np.trunc(latency[mine])
    curves = {}
    clashes: list[str] = []
    for name in dict.fromkeys(names.tolist()):
        rows = names == name
        unique, first = np.unique(tokens[rows], return_index=True)
        if unique.size < int(rows.sum()):
            clashes += _clashes(name, tokens[rows], latency[rows])
        curves[name] = LayerCurve(unique, latency[rows][first])
    if clashes:
        warn(f"{path} (tp_size {tp}) measures {len(clashes)} operator(s) twice at one token "
             f"count with different latencies, e.g. {clashes[0]}; the first row is used")
    return curves


def _clashes(name: str, tokens: np.ndarray, latency: np.ndarray) -> list[str]:
    """Each token count at which operator `name` has a latency other than its first row's."""
    order = np.argsort(tokens, kind="stable")
    tokens, latency = tokens[order], latency[order]
    clash = (tokens[1:] == tokens[:-1]) & (latency[1:] != latency[:-1])
    return [f"{name} at {tokens[k]} tokens: {latency[k]:g} and {latency[k + 1]:g} ns"
            for k in np.flatnonzero(clash).tolist()]


def _check_rows(path: Path, rows: list[list[str]], col: dict[str, int]) -> None:
    """Walk a table that failed the column checks and raise for its first bad line."""
    for lineno, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        where = f"{path}:{lineno}"
        try:
            _count(row[col["tp_size"]], "tp_size", where, 1)
            _count(row[col["input"]], "input", where, 1)
            _count(row[col["kv_cache"]], "kv_cache", where, 0)
            latency = float(row[col["latency(ns)"]])
        except (ValueError, IndexError):
            raise _bad(path, f"non-numeric or missing value on line {lineno}") from None
        checked(latency, PROFILE_NS, "latency(ns)", where, _FIX)


def read_grid(path: Path, header: tuple[str, str, str],
              warn: Callable[[str], None] = lambda msg: None) -> Grid:
    """Parse a prediction grid CSV (`a,b,prediction`, integer ns) into a dense 2-D table; of a
    cell listed twice the last row is used, and `warn` hears when the two disagree."""
    text = read_text(path, _FIX)
    first, _, body = text.partition("\n")
    if tuple(c.strip() for c in first.split(",")) != header:
        raise _bad(path, f"unexpected header {first.strip()!r}",
                   f"the header must be {','.join(header)}")
    try:
        flat = np.fromstring(body.replace("\n", ","), dtype=np.float64, sep=",")
    except ValueError:
        raise _bad(path, "non-numeric value in the grid") from None
    if flat.size == 0 or flat.size % 3 or not np.isfinite(flat).all():
        raise _bad(path, "non-numeric, non-finite or incomplete rows")
    rows = flat.reshape(-1, 3)
    if (rows[:, :2] < 0).any():
        raise _bad(path, "negative axis value (token counts and batch sizes are >= 0)")
    outside = rows[(rows[:, 2] < PROFILE_NS.low) | (rows[:, 2] > PROFILE_NS.high)]
    if outside.size:
        raise _bad(path, f"'prediction' must be {PROFILE_NS.describe()} ({PROFILE_NS.why}), got "
                   f"{outside[0, 2]:g}")
    pairs, first_rows = np.unique(rows[:, :2], axis=0, return_index=True)
    if pairs.shape[0] < rows.shape[0]:
        seen = {tuple(pair): rows[i, 2]
                for pair, i in zip(pairs.tolist(), first_rows, strict=True)}
        for a, b, value in rows.tolist():
            if seen[(a, b)] != value:
                warn(f"{path} lists ({header[0]}={a:g}, {header[1]}={b:g}) twice with different "
                     f"predictions ({seen[(a, b)]:g} and {value:g} ns); the last row is used")
                break
    axis0 = np.unique(rows[:, 0])
    axis1 = np.unique(rows[:, 1])
    if min(axis0.size, axis1.size) < 2:  # lookups interpolate between two values per axis
        raise _bad(path, f"the grid needs at least two values on each axis (it has "
                   f"{axis0.size} x {axis1.size})")
    if axis0.size * axis1.size > pairs.shape[0]:  # checked before the dense table is made
        raise _bad(path, "the grid has holes (not every axis combination is present)")
    values = np.full((axis0.size, axis1.size), np.nan)
    values[np.searchsorted(axis0, rows[:, 0]), np.searchsorted(axis1, rows[:, 1])] = rows[:, 2]
    return Grid(axis0, axis1, values)


@dataclass(frozen=True, slots=True)
class RawAttention:
    """Measured attention points from attention.csv, in ns per layer call.

    Prefill points are (prior KV, chunk) for one request; decode points are (batch, mean
    per-request context); the profiler's decode `kv_cache_size` is the total over the batch.
    """

    prefill: np.ndarray
    decode: np.ndarray


TP_COLUMN = "num_tensor_parallel_workers"


def _folder_tp(path: Path) -> int | None:
    """The TP degree a profile folder is named for (`.../tp2/attention.csv`: 2), if any."""
    name = path.parent.name
    digits = name[2:]
    return int(digits) if name.startswith("tp") and digits.isascii() and digits.isdigit() \
        else None


def read_raw_attention(path: Path) -> RawAttention:
    """Parse attention.csv (GPU Vidur columns in ms, or TPU columns in ns)."""
    rows = _rows(path)
    header = rows[0] if rows else []
    fields = set(header)
    gpu = "time_stats.attn_prefill.median" in fields
    needed = {"prefill_chunk_size", "kv_cache_size", "batch_size", "is_prefill"}
    if not gpu:
        needed.add("p50_ns")
    if not needed <= fields:
        raise _bad(path, f"missing column(s) {', '.join(sorted(needed - fields))}")
    folder_tp = _folder_tp(path) if TP_COLUMN in fields else None
    prefill, decode = [], []
    for lineno, values in enumerate(rows[1:], start=2):
        if not values:
            continue
        row = dict(zip(header, values, strict=False))
        where = f"{path}:{lineno}"
        try:
            if folder_tp is not None and _count(row[TP_COLUMN], TP_COLUMN, where, 1) != folder_tp:
                raise InputError(f"the row is profiled at TP {row[TP_COLUMN].strip()} but lies in "
                                 f"the tp{folder_tp} folder", where,
                                 "move the row to its tp folder or regenerate the profile")
            is_prefill = row["is_prefill"].strip().lower() == "true"
            if gpu:
                key = "prefill" if is_prefill else "decode"
                ns = float(row[f"time_stats.attn_{key}.median"]) * 1e6
            else:
                ns = float(row["p50_ns"])
            batch = _count(row["batch_size"], "batch_size", where, 1)
            kv = _count(row["kv_cache_size"], "kv_cache_size", where, 0)
            chunk = _count(row["prefill_chunk_size"], "prefill_chunk_size", where, 0)
        except (ValueError, KeyError):
            raise _bad(path, f"non-numeric or missing value on line {lineno}") from None
        ns = checked(ns, PROFILE_NS, "attention time (ns)", where, _FIX)
        if is_prefill:
            prefill.append((kv, chunk, ns))
        else:
            decode.append((batch, kv / batch, ns))
    if not prefill or not decode:
        raise _bad(path, "needs both prefill and decode rows")
    return RawAttention(np.array(sorted(prefill)), np.array(sorted(decode)))
