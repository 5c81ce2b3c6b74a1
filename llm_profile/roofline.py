"""Roofline PerfModel: operator latency from FLOPs, bytes and a hardware spec sheet.

time = max(FLOPs / (peak × compute efficiency), bytes / (bandwidth × memory efficiency))
       + a fixed per-operator overhead (kernel launches of an eager serving stack).
With a calibration table (`llm_profile/calibration/*.json`, fitted by `llm_profile.calibrate`
against measured profiles) the efficiency of every non-attention operator follows the table;
without one, per-class constants read off the RTX A6000 and H100 profiles apply (a catalogue
file may override them under `efficiency`). Attention always uses the constants.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from inference_serving.model_config import ModelConfig
from llm_profile.calibrate import OP_CLASS, predict_ns, weight_log2, work
from llm_profile.hardware_catalog import HardwareSpec
from llm_profile.perf_model import AttentionBatch, PerfModel


@dataclass(frozen=True, slots=True)
class Efficiency:
    """Achieved fraction of peak, and fixed overhead (ns), per operator class."""

    gemm_compute: float = 0.72
    gemm_memory: float = 0.93
    gemm_overhead_ns: float = 3000.0
    norm_memory: float = 0.09
    norm_overhead_ns: float = 16000.0
    rope_memory: float = 0.12
    rope_overhead_ns: float = 24000.0
    act_memory: float = 0.55
    act_overhead_ns: float = 4000.0
    embedding_memory: float = 0.44
    embedding_overhead_ns: float = 2500.0
    attn_compute: float = 0.45
    attn_memory: float = 0.85
    attn_overhead_ns: float = 8000.0

    @classmethod
    def for_hardware(cls, hw: HardwareSpec) -> Efficiency:
        """Defaults overridden by the catalogue file's `efficiency` entries."""
        known = {f.name for f in fields(cls)}
        return replace(cls(), **{k: float(v) for k, v in hw.efficiency.items() if k in known})


NORMS = ("input_layernorm", "post_layernorm", "final_layernorm")


class RooflinePerfModel(PerfModel):
    """Analytical latencies for one model on one device at a TP degree."""

    name = "roofline"

    def __init__(self, model: ModelConfig, hw: HardwareSpec, tp: int, fp_bits: int = 16,
                 calibration: dict | None = None) -> None:
        self.model = model
        self.calibration = calibration
        self.hw = hw
        self.tp = tp
        self.fp = fp_bits // 8
        self.eff = Efficiency.for_hardware(hw)
        self.flops_per_ns = hw.peak_flops_per_ns(fp_bits)
        self.bytes_per_ns = hw.mem_bytes_per_ns
        self._cache: dict[tuple[str, int], int] = {}
        m = model
        h, kvd, ffn, qd = m.hidden_size, m.kv_dim, m.intermediate_size, m.q_dim
        # (K, N) of every matrix multiply on one TP rank; expert rows are whole experts.
        self.gemms = {
            "q_proj": (h, qd // tp), "k_proj": (h, kvd // tp), "v_proj": (h, kvd // tp),
            "o_proj": (qd // tp, h), "gate_proj": (h, ffn // tp), "up_proj": (h, ffn // tp),
            "down_proj": (ffn // tp, h), "lm_head": (h, m.vocab_size // tp),
            "gate": (h, max(m.num_experts, 1)), "expert.w1": (h, ffn), "expert.w3": (h, ffn),
            "expert.w2": (ffn, h),
        }

    def _roof(self, flops: float, nbytes: float, compute_eff: float, memory_eff: float,
              overhead: float) -> int:
        compute = flops / (self.flops_per_ns * compute_eff) if flops else 0.0
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
        if self.calibration is not None and layer in OP_CLASS:
            flops, nbytes = work(self.model, layer, t, self.tp, self.fp)
            ideal = max(flops / self.flops_per_ns, nbytes / self.bytes_per_ns)
            weight = weight_log2(self.model, layer, self.tp)
            return max(1, int(predict_ns(self.calibration, layer, t, weight, ideal, nbytes)))
        e, fp, m, tp = self.eff, self.fp, self.model, self.tp
        h = m.hidden_size
        if layer in self.gemms:
            k, n = self.gemms[layer]
            return self._roof(2.0 * t * k * n, (k * n + t * k + t * n) * fp, e.gemm_compute,
                              e.gemm_memory, e.gemm_overhead_ns)
        if layer in NORMS:
            return self._roof(0, (2 * t * h + h) * fp, 1, e.norm_memory, e.norm_overhead_ns)
        if layer == "rope":
            nbytes = 2 * t * (m.q_dim + m.kv_dim) // tp * fp
            return self._roof(0, nbytes, 1, e.rope_memory, e.rope_overhead_ns)
        if layer == "act_fn":
            nbytes = 3 * t * m.intermediate_size // tp * fp
            return self._roof(0, nbytes, 1, e.act_memory, e.act_overhead_ns)
        if layer == "embedding":
            return self._roof(0, 2 * t * h * fp, 1, e.embedding_memory, e.embedding_overhead_ns)
        if layer == "attn":
            return self.attention_ns(AttentionBatch((t,), (0,), ()))
        raise KeyError(f"the roofline model has no operator '{layer}'")

    def attention_ns(self, batch: AttentionBatch) -> int:
        """Prefill part (compute-heavy) plus decode part (KV reads), one layer, one rank."""
        m, fp, e = self.model, self.fp, self.eff
        heads = m.num_heads // self.tp
        kv_width = 2 * m.kv_dim // self.tp  # K and V values per token on this rank
        q_width = 2 * m.q_dim // self.tp  # queries in, outputs back
        total = 0
        if batch.prefill_q:
            flops = bytes_ = 0.0
            for q, kv in zip(batch.prefill_q, batch.prefill_kv, strict=True):
                flops += 4.0 * q * (kv + (q + 1) / 2) * m.head_dim * heads
                bytes_ += ((kv + q) * kv_width + q * q_width) * fp
            total += self._roof(flops, bytes_, e.attn_compute, e.attn_memory,
                                e.attn_overhead_ns)
        if batch.decode_lens:
            context = sum(batch.decode_lens)
            flops = 4.0 * context * m.head_dim * heads
            bytes_ = (context * kv_width + len(batch.decode_lens) * q_width) * fp
            total += self._roof(flops, bytes_, e.attn_compute, e.attn_memory,
                                e.attn_overhead_ns)
        return max(1, total)
