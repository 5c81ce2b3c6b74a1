"""PerfModel backed by profiled tables in the LLMServingSim layout (`<hw>/<org>/<model>/tp<N>/`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from llm_profile.perf_model import AttentionBatch, PerfModel, decode_total
from llm_profile.profile_tables import (
    Grid,
    LayerCurve,
    RawAttention,
    read_grid,
    read_layers,
    read_raw_attention,
)
from llmsim_core.errors import InputError

PREFILL_HEADER = ("kv_cache_size", "prefill_chunk_size", "prediction")
DECODE_HEADER = ("batch_size", "kv_cache_size", "prediction")
# Operators outside the existing tool's layer list: a table without them (every table the
# existing profiler wrote) has them priced by the fallback model instead of failing.
OPTIONAL_OPS = frozenset({"qk_norm"})


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def _extrapolate(x: float, xs: np.ndarray, ys: np.ndarray) -> float:
    """Linear interpolation inside [xs0, xsN], linear extrapolation from the end pairs outside."""
    if xs.size == 1:
        return float(ys[0])
    if x < xs[0]:
        i = 0
    elif x > xs[-1]:
        i = xs.size - 2
    else:
        return float(np.interp(x, xs, ys))
    slope = (ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i])
    return float(ys[i] + slope * (x - xs[i]))


def _grid_value(grid: Grid, a: float, b: float) -> float:
    """Value at (a, b): exact on grid points, bilinear inside, linear extrapolation outside."""
    i = int(np.searchsorted(grid.axis0, a))
    if i < grid.axis0.size and grid.axis0[i] == a:
        row = grid.values[i]
    else:
        lo = min(max(i - 1, 0), grid.axis0.size - 2)
        rows = grid.values[lo:lo + 2]
        xs = grid.axis0[lo:lo + 2]
        row = rows[0] + (rows[1] - rows[0]) * (a - xs[0]) / (xs[1] - xs[0])
    return _extrapolate(b, grid.axis1, row)


class ProfiledPerfModel(PerfModel):
    """Operator latencies from layers.csv; attention from prediction grids or attention.csv.

    GPU lookups are exact where measured, interpolated between measured token counts and
    extrapolated past them (with one warning per operator). TPU tables follow the existing
    simulator: nearest measured token count, and 1 ns for operators without rows.
    `fallback` (the roofline) prices attention when no attention table exists and the
    optional operators a table lacks.
    """

    name = "profiled"

    def __init__(self, directory: Path, tp: int, tpu: bool, warn: Callable[[str], None],
                 fallback: PerfModel | None = None, live_prediction: bool = False
                 ) -> None:
        self.directory = directory
        self.tpu = tpu
        self._warn = warn
        self._warned: set[str] = set()
        self.curves: dict[str, LayerCurve] = read_layers(directory / "layers.csv", tp, warn)
        self._layer_cache: dict[tuple[str, int], int] = {}
        self._dense: dict[str, list[int]] = {}
        self._attn_cache: dict[tuple[int, int, int, int], int] = {}
        self.prefill_grid: Grid | None = None
        self.decode_grid: Grid | None = None
        self.raw: RawAttention | None = None
        self._fallback = fallback
        self.predictor = None
        pred = directory / "predictions"
        prefill_csv = pred / "attn_prefill_predictions.csv"
        decode_csv = pred / "attn_decode_predictions.csv"
        if live_prediction:
            if not (directory / "attention.csv").is_file():
                raise InputError("--enable-attn-prediction needs attention.csv",
                                 str(directory), "profile attention or drop the flag")
            from llm_profile.attention_predictor import AttentionPredictor

            self.predictor = AttentionPredictor.train(
                read_raw_attention(directory / "attention.csv"))
            self.attention_source = "live random-forest predictor"
        elif prefill_csv.is_file() != decode_csv.is_file():
            found, missing = (prefill_csv, decode_csv) if prefill_csv.is_file() else \
                (decode_csv, prefill_csv)
            raise InputError(f"{found.name} has no {missing.name} beside it (the grids come "
                             "as a pair)", str(pred), "add the missing grid or remove the other")
        elif prefill_csv.is_file() and decode_csv.is_file():
            self.prefill_grid = read_grid(prefill_csv, PREFILL_HEADER, warn)
            self.decode_grid = read_grid(decode_csv, DECODE_HEADER, warn)
            self.attention_source = "prediction grids"
        elif (directory / "attention.csv").is_file():
            self.raw = read_raw_attention(directory / "attention.csv")
            self.attention_source = "attention.csv"
        elif fallback is not None:
            self.attention_source = f"{fallback.name} (no attention table)"
            warn(f"no attention table in {directory}: attention latency comes from the "
                 f"{fallback.name} model")
        else:
            raise InputError("no attention data", str(directory),
                             "add predictions/*.csv or attention.csv")

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self._warn(message)

    def layer_ns(self, layer: str, tokens: int) -> int:
        """Latency of `layer` at `tokens` tokens (memoized)."""
        key = (layer, tokens)
        cached = self._layer_cache.get(key)
        if cached is not None:
            return cached
        value = self._lookup(layer, tokens)
        self._layer_cache[key] = value
        return value

    def _lookup(self, layer: str, tokens: int) -> int:
        curve = self.curves.get(layer)
        if curve is None:
            if self.tpu:
                return 1
            if layer in OPTIONAL_OPS and self._fallback is not None:
                self._warn_once(layer, f"{layer}: no rows in {self.directory / 'layers.csv'}; "
                                f"priced by the {self._fallback.name} model")
                return self._fallback.layer_ns(layer, tokens)
            raise InputError(f"layers.csv has no rows for operator '{layer}'",
                             str(self.directory / "layers.csv"),
                             "profile that operator or use a complete table")
        xs = curve.tokens
        if self.tpu:
            i = int(np.abs(xs - tokens).argmin())
            return int(curve.latency[i])
        if tokens > xs[-1] or tokens < xs[0]:
            self._warn_once(layer, f"{layer}: {tokens} tokens is outside the profiled range "
                            f"{xs[0]}..{xs[-1]}; extrapolating linearly")
            return max(1, int(_extrapolate(tokens, xs, curve.latency)))
        dense = self._dense.get(layer)
        if dense is None:
            # One vectorized interpolation over the whole range beats one call per lookup.
            dense = np.interp(np.arange(xs[-1] + 1), xs, curve.latency).astype(np.int64).tolist()
            self._dense[layer] = dense
        return max(1, dense[tokens])

    def attention_ns(self, batch: AttentionBatch) -> int:
        """Per-layer attention over the batch: prefill part + decode part (serving.md §6.5)."""
        if self._fallback is not None and self.prefill_grid is None and self.raw is None \
                and self.predictor is None:
            return self._fallback.attention_ns(batch)
        kv_p = c_p = n_d = kv_d = 0
        if batch.prefill_q:
            kv_p = _round_up(sum(batch.prefill_kv), 64)
            squares = sum(q * q for q in batch.prefill_q) + len(batch.decode_lens)
            c_p = _round_up(round(math.sqrt(squares)), 32)
        if batch.decode_lens:
            n_d = len(batch.decode_lens)
            kv_d = _round_up(decode_total(batch.decode_lens) // n_d, 64)
        key = (kv_p, c_p, n_d, kv_d)
        cached = self._attn_cache.get(key)
        if cached is None:
            cached = self._attention_lookup(*key)
            self._attn_cache[key] = cached
        return cached

    def _attention_lookup(self, kv_p: int, c_p: int, n_d: int, kv_d: int) -> int:
        total = 0.0
        if self.predictor is not None:  # memoized by the caller: one call per distinct key
            if c_p:
                total += float(self.predictor.prefill_ns(np.array([kv_p]), np.array([c_p]))[0])
            if n_d:
                total += float(self.predictor.decode_ns(np.array([n_d]), np.array([kv_d]))[0])
        elif self.prefill_grid is not None and self.decode_grid is not None:
            if c_p:
                total += self._grid(self.prefill_grid, kv_p, c_p, "prefill")
            if n_d:
                total += self._grid(self.decode_grid, n_d, kv_d, "decode")
        elif self.raw is not None:
            if c_p:
                total += self._raw_nearest(self.raw.prefill, kv_p, c_p)
            if n_d:
                total += self._raw_nearest(self.raw.decode, n_d, kv_d)
        return max(1, int(total))

    def _grid(self, grid: Grid, a: int, b: int, kind: str) -> float:
        if not (grid.axis0[0] <= a <= grid.axis0[-1] and grid.axis1[0] <= b <= grid.axis1[-1]):
            self._warn_once(f"attn-{kind}", f"{kind} attention key ({a}, {b}) is outside the "
                            "prediction grid; extrapolating linearly")
        return _grid_value(grid, a, b)

    @staticmethod
    def _raw_nearest(points: np.ndarray, a: float, b: float) -> float:
        """Interpolate along the second axis among the rows with the nearest first-axis value."""
        firsts = points[:, 0]
        nearest = firsts[np.abs(firsts - a).argmin()]
        rows = points[firsts == nearest]
        order = np.argsort(rows[:, 1], kind="stable")
        xs, idx = np.unique(rows[order, 1], return_index=True)
        return max(1.0, _extrapolate(b, xs, rows[order, 2][idx]))
