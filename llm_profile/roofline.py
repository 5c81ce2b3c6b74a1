"""Roofline PerfModel: operator latency from FLOPs, bytes and a hardware spec sheet.

time = max(FLOPs / (peak × compute efficiency), bytes / (bandwidth × memory efficiency))
       + a fixed overhead (per kernel launch of an eager serving stack, see `op_recipes`).
With a calibration table (`llm_profile/calibration/*.json`, fitted by `llm_profile.calibrate`
against measured profiles) the efficiency of every non-attention operator follows the table;
without one, the per-class constants below apply (read off the RTX A6000 and H100 profiles; a
catalogue file may override them under `efficiency`). Attention always uses the constants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from llm_profile.calibrate import OP_CLASS, GemmRatio, predict_ns, weight_log2, work
from llm_profile.hardware_catalog import CATALOGUE_DIR, HardwareSpec
from llm_profile.perf_model import AttentionBatch, PerfModel, decode_total
from llmsim_core.errors import InputError
from llmsim_core.model_config import ModelConfig


@dataclass(frozen=True, slots=True)
class Efficiency:
    """Achieved fraction of peak and fixed overhead (ns; per launch for element-wise classes,
    per call for GEMMs and the MoE router) per operator class, and GEMM tile rows."""

    gemm_compute: float = 0.72
    gemm_memory: float = 0.93
    gemm_overhead_ns: float = 3000.0
    gemm_tile: float = 128.0
    router_overhead_ns: float = 50000.0
    norm_memory: float = 0.83
    norm_overhead_ns: float = 2000.0
    rope_memory: float = 0.75
    rope_overhead_ns: float = 3000.0
    act_memory: float = 1.0
    act_overhead_ns: float = 900.0
    embedding_memory: float = 0.41
    embedding_overhead_ns: float = 4700.0
    attn_compute: float = 0.45
    attn_memory: float = 0.85
    attn_overhead_ns: float = 8000.0

    @classmethod
    def for_hardware(cls, hw: HardwareSpec) -> Efficiency:
        """Defaults overridden by the catalogue file's `efficiency` entries."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(hw.efficiency) - known)
        if unknown:
            raise InputError(f"unknown efficiency keys {', '.join(unknown)}",
                             f"{CATALOGUE_DIR}/{hw.name}.json",
                             f"use only {', '.join(sorted(known))}")
        return replace(cls(), **hw.efficiency)


class RooflinePerfModel(PerfModel):
    """Analytical latencies for one model on one device at a TP degree."""

    name = "roofline"
    attention_source = "roofline"

    def __init__(self, model: ModelConfig, hw: HardwareSpec, tp: int, fp_bits: int = 16,
                 calibration: dict | None = None) -> None:
        self.model = model
        self.hw = hw
        self.tp = tp
        self.fp = fp_bits // 8
        self.calibration = calibration
        self._gemm_ratio = GemmRatio(calibration) if calibration is not None else None
        self.eff = e = Efficiency.for_hardware(hw)
        self.flops_per_ns = hw.peak_flops_per_ns(fp_bits)
        self.bytes_per_ns = hw.mem_bytes_per_ns
        self._memory_bound = {"norm": (e.norm_memory, e.norm_overhead_ns),
                              "rope": (e.rope_memory, e.rope_overhead_ns),
                              "act": (e.act_memory, e.act_overhead_ns),
                              "embedding": (e.embedding_memory, e.embedding_overhead_ns)}
        self._cache: dict[tuple[str, int], int] = {}
        # Per rank: query heads, K and V values per token, and queries in plus outputs back.
        self._attention_widths = (model.num_heads // tp, 2 * model.kv_dim // tp,
                                  2 * model.q_dim // tp)

    def _roof(self, flops: float, nbytes: float, compute_eff: float, memory_eff: float,
              overhead: float) -> int:
        compute = flops / (self.flops_per_ns * compute_eff)
        memory = nbytes / (self.bytes_per_ns * memory_eff)
        return max(1, int(max(compute, memory) + overhead))

    def layer_ns(self, layer: str, tokens: int) -> int:
        """Latency of one call of `layer` over `tokens` tokens on one rank (memoized)."""
        key = (layer, tokens)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._layer(layer, tokens)
            self._cache[key] = cached
        return cached

    def _layer(self, layer: str, t: int) -> int:
        if layer == "attn":
            return self.attention_ns(AttentionBatch((t,), (0,), ()))
        cls = OP_CLASS.get(layer)
        if cls is None:
            raise KeyError(f"the roofline model has no operator '{layer}'")
        w = work(self.model, layer, t, self.tp, self.fp)
        if self.calibration is not None:
            ideal = max(w.flops / self.flops_per_ns, w.nbytes / self.bytes_per_ns)
            weight = weight_log2(self.model, layer, self.tp)
            return max(1, int(predict_ns(self.calibration, layer, t, weight, ideal, w.launches,
                                         self.model.model_type, self._gemm_ratio)))
        e = self.eff
        if cls == "gemm":
            # GEMM kernels cover the token (M) dimension in tiles: up to one tile the library
            # picks a narrow kernel, beyond it the last partial tile costs a whole one (the
            # measured profiles step up at 129, 257, 385 … tokens).
            tile = e.gemm_tile
            padded = t if t <= tile else math.ceil(t / tile) * tile
            return self._roof(w.flops * padded / t, w.nbytes, e.gemm_compute, e.gemm_memory,
                              e.gemm_overhead_ns)
        if cls == "router":
            return self._roof(w.flops, w.nbytes, e.gemm_compute, e.gemm_memory,
                              e.router_overhead_ns)
        memory_eff, overhead = self._memory_bound[cls]
        return self._roof(0.0, w.nbytes, 1.0, memory_eff, overhead * w.launches)

    def attention_ns(self, batch: AttentionBatch) -> int:
        """Prefill part (compute-heavy) plus decode part (KV reads), one layer, one rank."""
        # Prefill and decode are separate kernel launches in the serving stacks that were
        # profiled, so each part pays its own fixed cost (as the table mode sums two lookups).
        m, fp, e = self.model, self.fp, self.eff
        heads, kv_width, q_width = self._attention_widths
        total = 0
        if batch.prefill_q:
            flops = nbytes = 0.0
            for q, kv in zip(batch.prefill_q, batch.prefill_kv, strict=True):
                flops += 4.0 * q * (kv + (q + 1) / 2) * m.head_dim * heads
                nbytes += ((kv + q) * kv_width + q * q_width) * fp
            total += self._roof(flops, nbytes, e.attn_compute, e.attn_memory,
                                e.attn_overhead_ns)
        if batch.decode_lens:
            context = decode_total(batch.decode_lens)
            flops = 4.0 * context * m.head_dim * heads
            nbytes = (context * kv_width + len(batch.decode_lens) * q_width) * fp
            total += self._roof(flops, nbytes, e.attn_compute, e.attn_memory,
                                e.attn_overhead_ns)
        return max(1, total)
