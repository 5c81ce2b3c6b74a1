"""Parsers for the current LLMServingSim profile layout
(`<hardware>/<org>/<model>/<variant>/meta.yaml` + `tp<N>/{dense,per_sequence,attention,moe,
skew_fit}.csv`, times in microseconds).

Everything is read and checked once at load; the perf model keeps plain Python lists and dicts.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmsim_core.bounds import INT32_MAX
from llmsim_core.errors import InputError
from llmsim_core.strict_json import read_text

_FIX = "regenerate or fix the profile file"
US_TO_NS = 1000.0
DENSE_HEADER = ("layer", "tokens", "time_us")
PER_SEQUENCE_HEADER = ("layer", "sequences", "time_us")
ATTENTION_HEADER = ("prefill_chunk", "kv_prefill", "n_decode", "kv_decode", "time_us")
MOE_HEADER = ("tokens", "activated_experts", "time_us")
SKEW_FIT_HEADER = ("pc", "n_label", "skew_rate_label", "kv_big_label", "kp_label", "alpha",
                   "n_samples")
MAX_PROFILE_US = 1e9  # one kernel call longer than 1000 s is not a measurement
# Profiled grids are regular or nearly so (the shipped ones span at most ten cells per row);
# a table whose axes span more cells than this is scattered points, not a grid.
MAX_GRID_CELLS = 2_000_000


# --------------------------------------------------------------------------- meta.yaml


def _scalar(text: str) -> Any:
    """A YAML scalar or flow list as meta.yaml writes them."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [_scalar(part) for part in inner.split(",")] if inner else []
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text in ("true", "false"):
        return text == "true"
    if text in ("null", "~", ""):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_meta(path: Path) -> dict[str, Any]:
    """The block mappings of a profile's meta.yaml (the subset of YAML the profiler writes)."""
    root: dict[str, Any] = {}
    stack: list[tuple[int, dict[str, Any]]] = [(-1, root)]
    pending: tuple[int, dict[str, Any], str] | None = None
    for lineno, raw in enumerate(read_text(path, _FIX).splitlines(), start=1):
        line = raw.rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        key, sep, value = line.strip().partition(":")
        if not sep or not key or (value and not value.startswith(" ")):
            raise InputError(f"unreadable meta.yaml line {lineno} ({line.strip()!r})",
                             f"{path}:{lineno}", _FIX)
        if pending is not None:
            p_indent, p_parent, p_key = pending
            if indent > p_indent:
                p_parent[p_key] = child = {}
                stack.append((p_indent, child))
            else:
                p_parent[p_key] = None
            pending = None
        while stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1]
        if key.strip() in parent:
            raise InputError(f"meta.yaml sets {key.strip()!r} twice (again on line {lineno})",
                             f"{path}:{lineno}", "keep one of them")
        if value.strip():
            parent[key.strip()] = _scalar(value)
        else:
            pending = (indent, parent, key.strip())
    if pending is not None:
        pending[1][pending[2]] = None
    if not root:
        raise InputError("meta.yaml is empty", str(path), "restore the profiler's meta.yaml")
    return root


# --------------------------------------------------------------------------- CSV tables


def _table(path: Path, header: tuple[str, ...], text_columns: int = 0) -> list[list[Any]]:
    """Rows of a profile CSV with `header`: the first `text_columns` as strings, the rest as
    finite numbers (the last one, a time, in [0, MAX_PROFILE_US])."""
    if not path.is_file():
        raise InputError(f"missing profile table {path.name}", str(path),
                         "profile this hardware/model/TP or pick another --perf-models root")
    try:
        rows = list(csv.reader(io.StringIO(read_text(path, _FIX), newline="")))
    except csv.Error as exc:
        raise InputError(f"unreadable CSV ({exc})", str(path), _FIX) from None
    if not rows or tuple(c.strip() for c in rows[0]) != header:
        got = ",".join(rows[0]) if rows else "an empty file"
        raise InputError(f"unexpected header {got!r}", str(path),
                         f"the header must be {','.join(header)}")
    out = []
    for lineno, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        where = f"{path}:{lineno}"
        if len(row) != len(header):
            raise InputError(f"{len(row)} values where the header has {len(header)}", where,
                             _FIX)
        try:
            nums = [float(v) for v in row[text_columns:]]
        except ValueError:
            raise InputError(f"non-numeric value on line {lineno}", where, _FIX) from None
        if not all(math.isfinite(v) for v in nums) or min(nums[:-1], default=0) < 0 \
                and header[-1] == "time_us":
            raise InputError(f"negative or non-finite value on line {lineno}", where, _FIX)
        if header[-1] == "time_us" and any(v != int(v) or v > INT32_MAX for v in nums[:-1]):
            raise InputError(f"a count on line {lineno} is not a whole number in [0, "
                             f"{INT32_MAX}]", where, _FIX)
        if header[-1] == "time_us" and not 0 <= nums[-1] <= MAX_PROFILE_US:
            raise InputError(f"'time_us' must be in [0, {MAX_PROFILE_US:g}] µs, got {nums[-1]:g}",
                             where, _FIX)
        out.append([*(v.strip() for v in row[:text_columns]), *nums])
    if not out:
        raise InputError(f"{path.name} has no rows", str(path), _FIX)
    return out


@dataclass(frozen=True, slots=True)
class Curve:
    """Latency in ns against a count (tokens or sequences), sorted and unique."""

    xs: tuple[int, ...]
    ns: tuple[float, ...]


def read_curves(path: Path, header: tuple[str, str, str]) -> dict[str, Curve]:
    """dense.csv / per_sequence.csv: one curve per layer (a repeated point keeps the first)."""
    points: dict[str, dict[int, float]] = {}
    for layer, count, time_us in _table(path, header, text_columns=1):
        if count < 1 or count != int(count):
            raise InputError(f"'{header[1]}' must be a whole number >= 1, got {count:g}",
                             str(path), _FIX)
        points.setdefault(layer, {}).setdefault(int(count), time_us * US_TO_NS)
    return {layer: Curve(tuple(sorted(p)), tuple(p[x] for x in sorted(p)))
            for layer, p in points.items()}


@dataclass(frozen=True, slots=True)
class AttentionGrid:
    """attention.csv as a dense 4-D table over (prefill_chunk, kv_prefill, n_decode, kv_decode).

    The profiler skips impossible or over-budget combinations; a missing cell takes the value
    of the nearest profiled cell along n_decode, then kv_decode, then kv_prefill (the dependent
    axes), so interpolation never meets a hole.
    """

    axes: tuple[tuple[int, ...], ...]
    values: list  # values[i][j][k][l] in ns


def _fill(values: np.ndarray, order: tuple[int, ...]) -> None:
    """Fill NaN cells in place from the nearest present cell along each axis of `order` in
    turn (a tie takes the larger coordinate)."""
    for axis in order:
        a = np.moveaxis(values, axis, -1)
        n = a.shape[-1]
        idx = np.arange(n)
        valid = ~np.isnan(a)
        before = np.maximum.accumulate(np.where(valid, idx, -1), axis=-1)
        after = np.minimum.accumulate(np.where(valid, idx, n)[..., ::-1], axis=-1)[..., ::-1]
        dist_before = np.where(before >= 0, idx - before, n + 1)
        dist_after = np.where(after < n, after - idx, n + 1)
        source = np.where(dist_after <= dist_before, after, before).clip(0, n - 1)
        filled = np.take_along_axis(a, source, axis=-1)
        a[...] = np.where(valid.any(axis=-1, keepdims=True), filled, a)


def _grid_shape(path: Path, axes: tuple[tuple[int, ...], ...]) -> tuple[int, ...]:
    """The dense grid's shape, refused when its axes span more than MAX_GRID_CELLS cells."""
    shape = tuple(len(a) for a in axes)
    if math.prod(shape) > MAX_GRID_CELLS:
        raise InputError(f"the table's axes span {' x '.join(map(str, shape))} cells, more "
                         f"than the {MAX_GRID_CELLS:,} a profiled grid may have", str(path),
                         "profile the points on a regular grid")
    return shape


def read_attention(path: Path) -> AttentionGrid:
    """attention.csv: one mixed prefill+decode attention call per row (ns after loading)."""
    rows = _table(path, ATTENTION_HEADER)
    axes = tuple(tuple(sorted({int(r[k]) for r in rows})) for k in range(4))
    index = [{v: i for i, v in enumerate(a)} for a in axes]
    values = np.full(_grid_shape(path, axes), np.nan)
    for r in reversed(rows):  # a repeated point keeps its first row
        values[tuple(index[k][int(r[k])] for k in range(4))] = r[4] * US_TO_NS
    _fill(values, (2, 3, 1, 0))
    if np.isnan(values).any():
        raise InputError("the attention grid has holes no neighbouring profiled cell fills",
                         str(path), _FIX)
    return AttentionGrid(axes, values.tolist())


@dataclass(frozen=True, slots=True)
class MoeGrid:
    """moe.csv: one MoE layer's time over (tokens, activated experts), ns."""

    tokens: tuple[int, ...]
    experts: tuple[int, ...]
    values: list  # values[i][j]


def read_moe(path: Path) -> MoeGrid:
    """moe.csv: a 2-D grid over tokens × activated experts."""
    rows = _table(path, MOE_HEADER)
    tokens = tuple(sorted({int(r[0]) for r in rows}))
    experts = tuple(sorted({int(r[1]) for r in rows}))
    t_index = {t: i for i, t in enumerate(tokens)}
    e_index = {e: i for i, e in enumerate(experts)}
    values = np.full(_grid_shape(path, (tokens, experts)), np.nan)
    for r in reversed(rows):
        values[t_index[int(r[0])], e_index[int(r[1])]] = r[2] * US_TO_NS
    # Few tokens cannot activate many experts: those cells take the nearest profiled count.
    _fill(values, (1, 0))
    if np.isnan(values).any():
        raise InputError("moe.csv has holes no neighbouring profiled cell fills", str(path),
                         _FIX)
    return MoeGrid(tokens, experts, values.tolist())


@dataclass(frozen=True, slots=True)
class SkewFit:
    """The decode-attention skew correction of one TP degree (meta.yaml `skew_fit`)."""

    n_bins: tuple[float, ...] = ()
    n_labels: tuple[str, ...] = ()
    sr_bins: tuple[float, ...] = ()
    sr_labels: tuple[str, ...] = ()
    kv_bins: tuple[float, ...] = ()
    kv_labels: tuple[str, ...] = ()
    kp_bins: tuple[float, ...] = ()
    kp_labels: tuple[str, ...] = ()
    pcs: tuple[int, ...] = ()
    alpha_default: float = 0.0
    alphas: dict[tuple, float] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        """False when the profile has no fit: no correction (alpha 0)."""
        return bool(self.alphas) or self.alpha_default != 0.0


def _axis(block: dict, name: str, meta: Path) -> tuple:
    value = block.get(name)
    if not isinstance(value, list) or not value:
        raise InputError(f"skew_fit.bucket_axes.{name} missing or not a list", str(meta),
                         _FIX)
    return tuple(value)


def read_skew_fit(meta: dict[str, Any], meta_path: Path, variant: Path, tp: int) -> SkewFit:
    """The fit of TP degree `tp`, or the disabled fit when meta.yaml has none."""
    block = meta.get("skew_fit")
    if not isinstance(block, dict) or not block.get("enabled"):
        return SkewFit()
    axes = block.get("bucket_axes")
    per_tp = block.get("per_tp")
    if not isinstance(axes, dict) or not isinstance(per_tp, dict):
        raise InputError("skew_fit is enabled but lacks bucket_axes or per_tp", str(meta_path),
                         _FIX)
    entry = per_tp.get(tp) or per_tp.get(str(tp))
    if not isinstance(entry, dict):
        return SkewFit()
    labels = {name: _axis(axes, name, meta_path) for name in
              ("n_bins", "n_labels", "skew_rate_bins", "skew_rate_labels", "kv_big_bins",
               "kv_big_labels", "kp_bins", "kp_labels")}
    alphas: dict[tuple, float] = {}
    pcs: set[int] = set()
    table = entry.get("bucket_table")
    if table:
        for pc, n, sr, kvb, kp, alpha, _ in _table(variant / str(table), SKEW_FIT_HEADER,
                                                   text_columns=5):
            try:
                pc_value = int(pc)
                alpha_value = float(alpha)
            except ValueError:
                raise InputError("non-numeric pc or alpha", str(variant / str(table)),
                                 _FIX) from None
            pcs.add(pc_value)
            alphas[(pc_value, n, sr, kvb, kp)] = alpha_value
    return SkewFit(labels["n_bins"], labels["n_labels"], labels["skew_rate_bins"],
                   labels["skew_rate_labels"], labels["kv_big_bins"], labels["kv_big_labels"],
                   labels["kp_bins"], labels["kp_labels"], tuple(sorted(pcs)),
                   float(entry.get("alpha_default") or 0.0), alphas)
