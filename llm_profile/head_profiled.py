"""PerfModel backed by the current LLMServingSim profile layout (`<variant>/tp<N>/`).

The profiler times vLLM's fused kernels, so one of our operators maps onto one profiled layer
(`q_proj` → `qkv_proj`, `gate_proj` → `gate_up_proj`, both norms → `layernorm`, `rope` →
`rotary_emb`) and the parts fused into it (`k_proj`, `v_proj`, `up_proj`) cost nothing.
`lm_head` is priced per sequence together with the sampler (per_sequence.csv). Attention is one
4-D multilinear lookup over (prefill tokens, prior KV of the prefills, decodes, mean decode
context), blended toward a lookup at the longest decode context by the profile's fitted skew
alpha; MoE layers are one lookup over (tokens, activated experts). All tables are read at
load; a lookup is list indexing and a few multiplications.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from pathlib import Path

from llm_profile.head_tables import (
    DENSE_HEADER,
    PER_SEQUENCE_HEADER,
    AttentionGrid,
    Curve,
    MoeGrid,
    SkewFit,
    parse_meta,
    read_attention,
    read_curves,
    read_moe,
    read_skew_fit,
)
from llm_profile.perf_model import AttentionBatch, PerfModel, decode_total
from llmsim_core.errors import InputError
from llmsim_core.strict_json import closest

# Our operator → the profiled layer that runs it (None: fused into another layer).
LAYER_OF: dict[str, str | None] = {
    "embedding": "embedding", "input_layernorm": "layernorm", "post_layernorm": "layernorm",
    "q_proj": "qkv_proj", "k_proj": None, "v_proj": None, "qk_norm": "qk_norm",
    "rope": "rotary_emb", "o_proj": "o_proj", "gate_proj": "gate_up_proj", "up_proj": None,
    "act_fn": "act_fn", "down_proj": "down_proj", "final_layernorm": "final_layernorm",
    "gate": None,  # the MoE router is part of the profiled MoE layer
}
PER_SEQUENCE_OPS = {"lm_head": ("lm_head", "sampler")}


def is_head_layout(model_dir: Path) -> bool:
    """True when a model folder holds variant folders with meta.yaml (the current layout)."""
    return model_dir.is_dir() and any((p / "meta.yaml").is_file() for p in model_dir.iterdir()
                                      if p.is_dir())


PRECISION = re.compile(r"(bf|fp)\d+")


def pick_variant(model_dir: Path, fp_bits: int) -> Path:
    """The variant folder for the run's precision: `bf16`, then `fp16`, or the only one."""
    variants = sorted(p for p in model_dir.iterdir() if (p / "meta.yaml").is_file())
    wanted = ("bf16", "fp16") if fp_bits == 16 else (f"fp{fp_bits}",)
    for name in wanted:
        if (model_dir / name / "meta.yaml").is_file():
            return model_dir / name
    if len(variants) == 1 and not PRECISION.fullmatch(variants[0].name):
        return variants[0]  # a variant not named after a precision serves any --fp
    raise InputError(f"no profile variant for {fp_bits}-bit weights",
                     f"{model_dir} has {', '.join(p.name for p in variants)}",
                     "pass --fp matching a variant or keep one variant folder")


def _bracket(axis: tuple[int, ...], x: float) -> tuple[int, float]:
    """Lower index i and weight w of x between axis[i] and axis[i+1], clamped to the ends."""
    if len(axis) == 1 or x <= axis[0]:
        return 0, 0.0
    if x >= axis[-1]:
        return len(axis) - 2, 1.0
    i = bisect_right(axis, x) - 1
    return i, (x - axis[i]) / (axis[i + 1] - axis[i])


def _label(bins: tuple[float, ...], labels: tuple[str, ...], x: float) -> str:
    """The bucket of x: labels[i] for bins[i] < x <= bins[i+1]."""
    i = bisect_left(bins, x) - 1
    return labels[min(max(i, 0), len(labels) - 1)]


_VERSION = re.compile(r"\d+\.\d+(\.\d+)?\S*")


def _check_identity(meta: dict, variant: Path, meta_path: Path) -> None:
    """meta.yaml's hardware and model, when given, name the folders the profile sits in."""
    folders = {"hardware": variant.parents[2].name,
               "model": f"{variant.parents[1].name}/{variant.parent.name}",
               "variant": variant.name}
    for key, folder in folders.items():
        value = meta.get(key)
        if value is not None and str(value) != folder:
            raise InputError(f"meta.yaml names {key} {value!r} but the profile sits under "
                             f"{folder!r}", str(meta_path),
                             "fix meta.yaml or move the profile to its own folder")


# The top-level keys of meta.yaml as the profiler writes them (only a few are read here).
META_KEYS = frozenset({
    "profiler_version", "vllm_version", "cuda_version", "gpu", "hardware", "profiled_at",
    "architecture", "architecture_sha256", "model", "variant", "tp_degrees", "engine_effective",
    "attention_grid", "measurement_iterations", "skew_profile", "skew_fit"})


class HeadPerfModel(PerfModel):
    """Operator, attention and MoE latencies from a current-layout profile of one TP degree."""

    name = "profiled"

    def __init__(self, variant: Path, tp: int, warn: Callable[[str], None],
                 fallback: PerfModel | None = None) -> None:
        meta_path = variant / "meta.yaml"
        self.meta = parse_meta(meta_path)
        directory = variant / f"tp{tp}"
        if not directory.is_dir():
            have = ", ".join(str(t) for t in self.meta.get("tp_degrees") or []) or "none"
            raise InputError(f"no profile for TP degree {tp}", f"{directory} is missing "
                             f"(meta.yaml lists TP degrees: {have})",
                             "profile that TP degree or change tp_size")
        listed = self.meta.get("tp_degrees")
        if listed is not None and not (isinstance(listed, list) and listed and all(
                type(t) is int and t >= 1 for t in listed) and len(set(listed)) == len(listed)):
            raise InputError(f"tp_degrees {listed!r} is not a list of distinct TP degrees",
                             str(meta_path), "write e.g. tp_degrees: [1, 2]")
        if isinstance(listed, list) and tp not in listed:
            raise InputError(f"meta.yaml lists TP degrees {listed}, not {tp}, though {directory} "
                             "exists", str(meta_path), "fix tp_degrees in meta.yaml")
        self.directory = directory
        _check_identity(self.meta, variant, meta_path)
        version = self.meta.get("vllm_version")
        if version is not None and not _VERSION.fullmatch(str(version)):
            raise InputError(f"vllm_version {version!r} is not a version number", str(meta_path),
                             "write the profiled vLLM's version, e.g. 0.19.0")
        self.vllm_version = str(version) if version is not None else None
        self._warn = warn
        for key in sorted(set(self.meta) - META_KEYS):
            near = closest(key, META_KEYS)
            warn(f"{meta_path}: key {key!r} is not one the profiler writes"
                 + (f" (did you mean {near!r}?)" if near else "") + "; it is ignored")
        self._fallback = fallback
        self.dense: dict[str, Curve] = read_curves(directory / "dense.csv", DENSE_HEADER)
        self.per_sequence: dict[str, Curve] = read_curves(directory / "per_sequence.csv",
                                                          PER_SEQUENCE_HEADER)
        self.attention: AttentionGrid = read_attention(directory / "attention.csv")
        self.moe: MoeGrid | None = read_moe(directory / "moe.csv") \
            if (directory / "moe.csv").is_file() else None
        self.skew: SkewFit = read_skew_fit(self.meta, meta_path, variant, tp)
        self.attention_source = "attention.csv (mixed prefill+decode grid" + \
            (", skew-corrected)" if self.skew.enabled else ")")
        self._layer_cache: dict[tuple[str, int], int] = {}
        self._attn_cache: dict[tuple, int] = {}
        self._moe_cache: dict[tuple[int, int], int] = {}
        self._warned: set[str] = set()

    # ---------------------------------------------------------------- operators

    def layer_ns(self, layer: str, tokens: int) -> int:
        """One call of `layer` at `tokens` tokens (sequences for lm_head), memoized."""
        key = (layer, tokens)
        cached = self._layer_cache.get(key)
        if cached is None:
            cached = self._layer_cache[key] = self._lookup(layer, tokens)
        return cached

    def _lookup(self, layer: str, count: int) -> int:
        if layer in PER_SEQUENCE_OPS:
            parts = PER_SEQUENCE_OPS[layer]
            missing = [p for p in parts if p not in self.per_sequence]
            if missing:
                raise InputError(f"per_sequence.csv has no rows for {', '.join(missing)}",
                                 str(self.directory / "per_sequence.csv"),
                                 "profile the model head (lm_head, sampler)")
            return max(1, round(sum(self._curve(self.per_sequence[p], count, p)
                                    for p in parts)))
        if layer not in LAYER_OF and layer in self.dense:
            return max(1, round(self._curve(self.dense[layer], count, layer)))
        profiled = LAYER_OF.get(layer, layer)
        if profiled is None:
            return 0
        curve = self.dense.get(profiled)
        if curve is None:
            if self._fallback is not None and layer == "qk_norm":
                return self._fallback.layer_ns(layer, count)
            raise InputError(f"dense.csv has no rows for layer '{profiled}' (operator "
                             f"'{layer}')", str(self.directory / "dense.csv"),
                             "profile that layer or use a complete table")
        return max(1, round(self._curve(curve, count, profiled)))

    def _curve(self, curve: Curve, x: int, name: str) -> float:
        xs, ys = curve.xs, curve.ns
        if len(xs) == 1:
            return ys[0]
        if x > xs[-1] and name not in self._warned:
            self._warned.add(name)
            self._warn(f"{name}: {x} is outside the profiled range {xs[0]}..{xs[-1]} in "
                       f"{self.directory}; extrapolating linearly")
        i, w = _bracket(xs, x)
        if x > xs[-1] or x < xs[0]:
            w = (x - xs[i]) / (xs[i + 1] - xs[i])
        return ys[i] + (ys[i + 1] - ys[i]) * w

    # ---------------------------------------------------------------- attention

    def attention_ns(self, batch: AttentionBatch) -> int:
        """One layer's attention over the batch, skew-corrected for uneven decode contexts."""
        # The profiler's keys: all prefill chunks as one chunk on all their prior KV, and
        # the decodes at their mean context (whole tokens), with the extremes for the skew.
        pc = sum(batch.prefill_q)
        kp = sum(batch.prefill_kv)
        lens = batch.decode_lens
        nd = len(lens)
        if nd:
            hi, lo = max(lens), min(lens)
            mean = decode_total(lens) // nd
        else:
            hi = lo = mean = 0
        key = (pc, kp, nd, mean, hi, lo)
        cached = self._attn_cache.get(key)
        if cached is None:
            cached = self._attention(pc, kp, nd, mean, hi, lo)
            if len(self._attn_cache) > 200_000:
                self._attn_cache.clear()
            self._attn_cache[key] = cached
        return cached

    def _attention(self, pc: int, kp: int, nd: int, mean: int, hi: int, lo: int) -> int:
        t_mean = self._grid(pc, kp, nd, mean)
        if nd <= 1 or hi == lo or not self.skew.enabled:
            return max(1, round(t_mean))
        alpha = self._alpha(pc, kp, nd, (mean - lo) / (hi - lo), hi)
        if alpha == 0.0:
            return max(1, round(t_mean))
        t_max = self._grid(pc, kp, nd, hi)
        return max(1, round(t_mean + alpha * max(0.0, t_max - t_mean)))

    def _alpha(self, pc: int, kp: int, nd: int, skew_rate: float, kv_big: int) -> float:
        s = self.skew
        grid_pc = min(s.pcs, key=lambda p: (abs(p - pc), p)) if s.pcs else pc
        key = (grid_pc, _label(s.n_bins, s.n_labels, nd),
               _label(s.sr_bins, s.sr_labels, skew_rate),
               _label(s.kv_bins, s.kv_labels, kv_big), _label(s.kp_bins, s.kp_labels, kp))
        return s.alphas.get(key, s.alpha_default)

    def _grid(self, pc: float, kp: float, nd: float, kd: float) -> float:
        """4-D multilinear interpolation, clamped to the profiled ranges."""
        a = self.attention.axes
        if pc > a[0][-1] or kd > a[3][-1] or nd > a[2][-1]:
            if "attention-range" not in self._warned:
                self._warned.add("attention-range")
                self._warn(f"attention point (chunk {pc}, decodes {nd}, context {kd:.0f}) is "
                           f"outside the profiled grid of {self.directory}; clamping")
        brackets = [_bracket(axis, x) for axis, x in zip(a, (pc, kp, nd, kd), strict=True)]
        (i, wi), (j, wj), (k, wk), (m, wm) = brackets
        v = self.attention.values
        total = 0.0
        for di, fi in ((0, 1 - wi), (1, wi)):
            if fi == 0.0:
                continue
            vi = v[i + di]
            for dj, fj in ((0, 1 - wj), (1, wj)):
                if fj == 0.0:
                    continue
                vj = vi[j + dj]
                for dk, fk in ((0, 1 - wk), (1, wk)):
                    if fk == 0.0:
                        continue
                    vk = vj[k + dk]
                    row_lo = vk[m]
                    row = row_lo if wm == 0.0 else row_lo + (vk[m + 1] - row_lo) * wm
                    total += fi * fj * fk * row
        return total

    # ---------------------------------------------------------------- MoE

    def moe_layer_ns(self, tokens: int, activated: int) -> int:
        """One MoE layer (router and experts) over `tokens` tokens using `activated` experts."""
        key = (tokens, activated)
        cached = self._moe_cache.get(key)
        if cached is None:
            grid = self.moe
            if grid is None:
                raise InputError("the model is a mixture of experts but the profile has no "
                                 "moe.csv", str(self.directory), "profile the MoE layer")
            (i, wi), (j, wj) = _bracket(grid.tokens, tokens), _bracket(grid.experts, activated)
            v = grid.values
            lo = v[i][j] + (v[i][j + 1] - v[i][j]) * wj if wj else v[i][j]
            value = lo
            if wi:
                hi = v[i + 1][j] + (v[i + 1][j + 1] - v[i + 1][j]) * wj if wj else v[i + 1][j]
                value = lo + (hi - lo) * wi
            cached = self._moe_cache[key] = max(1, round(value))
        return cached
