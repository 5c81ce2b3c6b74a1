"""How an eager PyTorch serving stack runs each memory-bound operator: launches and bytes.

The measured profiles time Hugging Face-style eager modules, where one "layer" row can be
several CUDA kernels. Counting those kernels and the bytes each one moves, per model family,
lets a calibration fitted on one family predict another: Llama's RMSNorm upcasts to fp32 and
runs eight kernels (36 bytes per element at 16 bits), PhiMoE's LayerNorm is one fused kernel
(4 bytes per element), so the same effective bandwidth and per-launch cost serve both.
Qwen3's per-head q/k norms (`qk_norm`, not in the existing tool's layer list) are two more
RMSNorms over the query and key heads.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmsim_core.model_config import ModelConfig

# Families whose decoder uses torch's fused LayerNorm; everything else (Llama, Mistral,
# Mixtral, Qwen2/3 and their MoE variants) uses the unfused fp32 RMSNorm of transformers.
LAYERNORM_FAMILIES = frozenset({"phimoe", "phi", "gpt2", "opt", "gpt_neox"})
NORMS = ("input_layernorm", "post_layernorm", "final_layernorm")


@dataclass(frozen=True, slots=True)
class Recipe:
    """Kernel launches of one operator call and bytes moved per element of its tensor."""

    launches: int
    bytes_per_element: float


def _norm_recipe(model: ModelConfig, fp: int) -> Recipe:
    """RMSNorm: to fp32, pow, mean, add, rsqrt, mul, back to fp, × weight; or one LayerNorm."""
    if model.model_type in LAYERNORM_FAMILIES:
        return Recipe(1, 2 * fp)
    # fp→fp32 (fp+4), pow (8), mean (4), × rsqrt (8), fp32→fp (4+fp), × weight (2fp).
    return Recipe(8, 28 + 4 * fp)


def recipe(model: ModelConfig, op: str, fp: int) -> Recipe:
    """Recipe of a memory-bound operator (norms, `qk_norm`, `rope`, `act_fn`, `embedding`,
    the MoE router `gate`)."""
    if op in NORMS:
        return _norm_recipe(model, fp)
    if op == "qk_norm":  # one RMSNorm over the query heads, one over the key heads
        norm = _norm_recipe(model, fp)
        return Recipe(2 * norm.launches, norm.bytes_per_element)
    if op == "rope":
        # q·cos, −half, cat, rotated·sin, add (2 + 1 + 2 + 2 + 3 passes), for q and for k.
        return Recipe(10, 10 * fp)
    if op == "act_fn":
        return Recipe(2, 5 * fp)  # SiLU (read, write) then × up (two reads, one write)
    if op == "embedding":
        return Recipe(1, 2 * fp)  # gather: read a row, write it
    if op == "gate":
        # The router's GEMM plus its top-k bookkeeping (softmax, top-k, renormalise, masks):
        # one call's fixed cost is fitted as a whole, its bytes are the GEMM's.
        return Recipe(1, float(fp))
    raise KeyError(op)


def elements(model: ModelConfig, op: str, tokens: int, tp: int) -> int:
    """Elements of the tensor a memory-bound operator streams on one TP rank."""
    if op in NORMS or op == "embedding":
        return tokens * model.hidden_size
    if op in ("rope", "qk_norm"):
        return tokens * (model.q_dim + model.kv_dim) // tp
    if op == "act_fn":
        width = model.intermediate_size if model.is_moe else model.intermediate_size // tp
        return tokens * width
    if op == "gate":
        experts = max(model.num_experts, 1)
        return tokens * model.hidden_size + model.hidden_size * experts + tokens * experts
    raise KeyError(op)
