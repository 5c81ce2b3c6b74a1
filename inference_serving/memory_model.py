"""Weight and KV-cache bytes per NPU (serving.md §5)."""

from __future__ import annotations

from dataclasses import dataclass

from inference_serving.placement import EDGE_BLOCK, NPU, WeightMap
from llmsim_core.model_config import ModelConfig

EDGE_OPS = ("embedding", "final_layernorm", "lm_head")


def block_weight_bytes(model: ModelConfig, tp: int, fp: int, ep: int | None = None) -> int:
    """Bytes of one transformer block's weights on one TP rank (MoE experts split over `ep`
    ranks, by default the TP degree)."""
    h, kvd, qd = model.hidden_size, model.kv_dim, model.q_dim
    attn = h * (qd // tp) * fp + 2 * h * (kvd // tp) * fp + (qd // tp) * h * fp
    if model.is_moe:
        experts = model.num_experts
        ffn = h * experts * fp + 3 * h * model.intermediate_size * fp * (experts // (ep or tp))
    else:
        ffn = 3 * h * (model.intermediate_size // tp) * fp
    return 2 * h * fp + attn + ffn


def weight_bytes_per_npu(model: ModelConfig, tp: int, pp: int, fp: int,
                         ep: int | None = None) -> int:
    """Weights on the most loaded NPU: embedding + ceil(L/pp) blocks + final norm + lm_head."""
    h = model.hidden_size
    vocab = (model.vocab_size // tp) * h * fp
    blocks = -(-model.num_layers // pp)
    return vocab + blocks * block_weight_bytes(model, tp, fp, ep) + h * fp + vocab


def op_weight_bytes(model: ModelConfig, tp: int, fp: int) -> dict[str, int]:
    """Weight bytes of each operator on one TP rank (§5.1); `expert` is all of the rank's
    experts of one block. Operators without weights are absent."""
    h, kvd, qd = model.hidden_size, model.kv_dim, model.q_dim
    vocab = (model.vocab_size // tp) * h * fp
    ops = {"embedding": vocab, "input_layernorm": h * fp, "q_proj": h * (qd // tp) * fp,
           "k_proj": h * (kvd // tp) * fp, "v_proj": h * (kvd // tp) * fp,
           "o_proj": (qd // tp) * h * fp, "post_layernorm": h * fp,
           "final_layernorm": h * fp, "lm_head": vocab}
    if model.is_moe:
        ops["gate"] = h * model.num_experts * fp
        ops["expert"] = expert_weight_bytes(model, fp) * (model.num_experts // tp)
    else:
        for op in ("gate_proj", "up_proj", "down_proj"):
            ops[op] = h * (model.intermediate_size // tp) * fp
    return ops


def expert_weight_bytes(model: ModelConfig, fp: int) -> int:
    """One expert's weights (w1, w2, w3; experts are not TP-split)."""
    return 3 * model.hidden_size * model.intermediate_size * fp


def resident_weight_bytes(model: ModelConfig, tp: int, pp: int, fp: int,
                          weights: WeightMap | None, ep: int | None = None) -> int:
    """Weights kept in device memory on the most loaded NPU: like `weight_bytes_per_npu`, but
    without the operators whose weights are placed on host or CXL memory (serving.md §5)."""
    if weights is None or not weights.offloaded:
        return weight_bytes_per_npu(model, tp, pp, fp, ep)
    ops = op_weight_bytes(model, tp, fp)
    edge = sum(ops[op] for op in EDGE_OPS if weights.of(op, EDGE_BLOCK) == NPU)
    blocks = [sum(n for op, n in ops.items() if op not in EDGE_OPS and weights.of(op, b) == NPU)
              for b in range(model.num_layers)]
    # Stages hold whole blocks, the remainder on the earlier stages (serving.md §13).
    heaviest, first = 0, 0
    for stage in range(pp):
        count = model.num_layers // pp + (1 if stage < model.num_layers % pp else 0)
        heaviest = max(heaviest, sum(blocks[first:first + count]))
        first += count
    return edge + heaviest


def offloaded_weight_bytes(model: ModelConfig, tp: int, fp: int,
                           weights: WeightMap | None) -> dict[str, int]:
    """Bytes of the whole instance's weights held in each off-device location."""
    placed: dict[str, int] = {}
    if weights is None or not weights.offloaded:
        return placed
    for op, nbytes in op_weight_bytes(model, tp, fp).items():
        blocks = (EDGE_BLOCK,) if op in EDGE_OPS else range(model.num_layers)
        for block in blocks:
            loc = weights.of(op, block)
            if loc != NPU:
                placed[loc] = placed.get(loc, 0) + tp * nbytes
    return placed


def kv_bytes_per_token(model: ModelConfig, fp: int) -> int:
    """K and V bytes of one token over all layers of the whole instance."""
    return 2 * model.kv_dim * model.num_layers * fp


@dataclass(frozen=True, slots=True)
class KvBudget:
    """How much KV one instance can hold, in blocks of `block_size` tokens."""

    weight_bytes: int
    block_bytes: int
    num_blocks: int


def kv_budget(model: ModelConfig, tp: int, pp: int, fp: int, block_size: int,
              mem_size: int, mem_util: float, placed: WeightMap | None = None,
              ep: int | None = None) -> KvBudget:
    """Per-NPU KV budget: (mem_size × mem_util − device-resident weights) in whole blocks (may
    be <= 0)."""
    weights = resident_weight_bytes(model, tp, pp, fp, placed, ep)
    npu_num = tp * pp
    block_bytes = kv_bytes_per_token(model, fp) * block_size // npu_num
    free = int(mem_size * mem_util) - weights
    return KvBudget(weights, block_bytes, max(free, 0) // block_bytes)


# Device memory vLLM counts outside weights and activations (CUDA context, cuBLAS and NCCL
# workspaces, the caching allocator's reserve). vLLM reports only its result, the KV block
# count: 1,175 MiB is what its 0.19.0 RTX 4090 run (meta.json: 2,588 blocks of Llama-3.1-8B
# at gpu_memory_utilization 0.9) leaves after the terms below; no other run reports it.
VLLM_NON_TORCH_BYTES = 1175 << 20
LOGITS_BYTES = 4  # the sampler's logits are float32


def vllm_activation_peak(model: ModelConfig, tp: int, fp: int, max_num_batched_tokens: int,
                         max_num_seqs: int) -> int:
    """vLLM's profiling forward (eager, CUDA graphs off as the profiles were taken): the MLP
    of a full token budget (gate_up output, activation output, hidden state and residual)
    plus the dummy sampler's float32 logits and probabilities of max_num_seqs rows."""
    h = model.hidden_size
    ffn = model.intermediate_size * (model.experts_per_token if model.is_moe else 1) // tp
    mlp = max_num_batched_tokens * (3 * ffn + 2 * h) * fp
    sampler = 2 * max_num_seqs * model.vocab_size * LOGITS_BYTES
    return mlp + sampler


def vllm_kv_budget(model: ModelConfig, tp: int, pp: int, fp: int, block_size: int,
                   mem_size: int, gpu_memory_utilization: float, max_num_batched_tokens: int,
                   max_num_seqs: int, placed: WeightMap | None = None,
                   ep: int | None = None) -> KvBudget:
    """Per-NPU KV budget as vLLM sizes it: mem_size × gpu_memory_utilization − device-resident
    weights − activation peak − non-torch memory, in whole blocks."""
    base = kv_budget(model, tp, pp, fp, block_size, mem_size, gpu_memory_utilization, placed,
                     ep)
    free = int(mem_size * gpu_memory_utilization) - base.weight_bytes \
        - vllm_activation_peak(model, tp, fp, max_num_batched_tokens, max_num_seqs) \
        - VLLM_NON_TORCH_BYTES
    return KvBudget(base.weight_bytes, base.block_bytes, max(free, 0) // base.block_bytes)
