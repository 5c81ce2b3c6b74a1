"""Example CUSTOM perf model: operator latencies from an outside cost model.

Use it with:
    python main.py --dataset dataset/example_sharegpt_req100_rate10.jsonl \
        --perf-model CUSTOM --custom-perf-model examples.custom_perf_model:OutsideCostModel

This is how your own NPU simulator plugs in. The simulator constructs the class once per
instance as `Class(hardware, model, tp, fp_bits)`: the instance's `hardware` name from the
cluster config, its `llmsim_core.model_config.ModelConfig`, its TP degree and the bits per
element. It then asks two questions, both answered in integer nanoseconds for one TP rank:

* `layer_ns(layer, tokens)`: one call of operator `layer` (`embedding`, `input_layernorm`,
  `q_proj`, `k_proj`, `v_proj`, `qk_norm` (Qwen3), `rope`, `o_proj`, `post_layernorm`,
  `gate_proj`, `up_proj`, `act_fn`, `down_proj`, `final_layernorm`, `lm_head`, and for MoE
  models `gate`, `expert.w1`, `expert.w2`, `expert.w3` for one expert) over `tokens` tokens;
* `attention_ns(batch)`: one layer's attention over the whole batch
  (`llm_profile.perf_model.AttentionBatch`: prefill chunk sizes, the KV already cached for
  each, and the context length of every decode).

Answers are memoized by the simulator per token count, so a slow outside model is asked each
distinct shape only once. `name` and `attention_source` (optional) label the model in the
start-up log. Below, `npu_cost_model` stands in for the outside model (a Python binding of your
simulator, or `subprocess.run` of its command line on a shape, cached); `OutsideCostModel`
translates operators into the shapes it understands.
"""

from __future__ import annotations

from functools import cache
from math import ceil


@cache
def npu_cost_model(m: int, k: int, n: int, elem_bytes: int) -> float:
    """The outside model: microseconds of an (m × k) · (k × n) matrix product on a small NPU
    (a 128 × 128 systolic array at 1 GHz fed by 800 GB/s of device memory), n = 1 being an
    elementwise pass over an m × k tensor."""
    tiles = ceil(m / 128) * ceil(n / 128)
    compute_us = tiles * (k + 256) / 1e3  # one cycle per k step plus fill and drain
    traffic = (m * k + k * n + m * n) * elem_bytes
    return max(compute_us, traffic / 800e3) + 2.0  # 2 µs launch cost


class OutsideCostModel:
    """Maps each operator to a matrix shape of `npu_cost_model` and returns its time in ns."""

    name = "outside cost model"
    attention_source = "outside cost model"

    def __init__(self, hardware: str, model, tp: int, fp_bits: int) -> None:
        self.hardware = hardware
        self.model = model
        self.tp = tp
        self.elem = fp_bits // 8

    def _shape(self, layer: str) -> tuple[int, int]:
        """(k, n) of the operator's product per TP rank; n = 1 for elementwise work."""
        m, tp = self.model, self.tp
        ffn = m.intermediate_size // tp
        shapes = {
            "q_proj": (m.hidden_size, m.q_dim // tp), "k_proj": (m.hidden_size, m.kv_dim // tp),
            "v_proj": (m.hidden_size, m.kv_dim // tp), "o_proj": (m.q_dim // tp, m.hidden_size),
            "gate_proj": (m.hidden_size, ffn), "up_proj": (m.hidden_size, ffn),
            "down_proj": (ffn, m.hidden_size), "lm_head": (m.hidden_size, m.vocab_size // tp),
            "gate": (m.hidden_size, max(m.num_experts, 1)),
            "expert.w1": (m.hidden_size, m.intermediate_size),
            "expert.w3": (m.hidden_size, m.intermediate_size),
            "expert.w2": (m.intermediate_size, m.hidden_size),
            "act_fn": (ffn, 1), "rope": (m.q_dim // tp, 1), "qk_norm": (m.q_dim // tp, 1)}
        return shapes.get(layer, (m.hidden_size, 1))  # embedding and the norms

    def layer_ns(self, layer: str, tokens: int) -> int:
        """One operator over `tokens` tokens."""
        k, n = self._shape(layer)
        return round(npu_cost_model(tokens, k, n, self.elem) * 1e3)

    def attention_ns(self, batch) -> int:
        """Q · K^T and P · V of every sequence in turn, all of this rank's heads at once."""
        m = self.model
        heads = m.num_heads // self.tp
        sequences = [*zip(batch.prefill_q, batch.prefill_kv, strict=True),
                     *((1, context - 1) for context in batch.decode_lens)]
        total_us = sum(2 * npu_cost_model(q * heads, m.head_dim, q + cached, self.elem)
                       for q, cached in sequences)
        return round(total_us * 1e3)
