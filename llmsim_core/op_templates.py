"""Operator templates: the operator names of one iteration (serving.md §6.2).

Shared by the serving layer (which prices them) and the calibration (which composes whole
iterations from profiled rows); the markers stand for work that is not a profiled row.
"""

from __future__ import annotations

from dataclasses import dataclass

ALLREDUCE = "ALLREDUCE"
ALLTOALL = "ALLTOALL"
EXPERTS = "EXPERTS"
ATTENTION = "attn"
MARKERS = (ATTENTION, ALLREDUCE, ALLTOALL, EXPERTS)
COLLECTIVE_KIND = {ALLREDUCE: "all_reduce", ALLTOALL: "all_to_all"}
EXPERT_ROWS = ("expert.w1", "expert.w2", "expert.w3")


@dataclass(frozen=True, slots=True)
class OpTemplate:
    """Operator names of one iteration; `block_ops` repeats per layer and may contain the
    markers `attn` (attention over the batch), `ALLREDUCE` / `ALLTOALL` (TP collectives of
    the hidden state) and `EXPERTS` (the MoE expert rows of every rank)."""

    pre_ops: tuple[str, ...]
    block_ops: tuple[str, ...]
    post_ops: tuple[str, ...]

    @property
    def compute_block_ops(self) -> tuple[str, ...]:
        """Block operators priced by token count (everything but the markers)."""
        return tuple(op for op in self.block_ops if op not in MARKERS)

    @property
    def collectives(self) -> tuple[str, ...]:
        """The collective markers of one block."""
        return tuple(op for op in self.block_ops if op in COLLECTIVE_KIND)

    @property
    def has_experts(self) -> bool:
        """True for a mixture-of-experts block."""
        return EXPERTS in self.block_ops


def _projections(tpu: bool, qk_norm: bool) -> tuple[str, ...]:
    """Q/K/V projections, the per-head q/k norm of Qwen3-style models, then rope (which TPU
    profiles fold into attention)."""
    return ("q_proj", "k_proj", "v_proj", *(("qk_norm",) if qk_norm else ()),
            *(() if tpu else ("rope",)))


def dense_template(tpu: bool, tp: int, qk_norm: bool = False) -> OpTemplate:
    """Llama-style block (serving.md §6.2)."""
    reduce = (ALLREDUCE,) if tp > 1 else ()
    block = ("input_layernorm", *_projections(tpu, qk_norm), ATTENTION, "o_proj", *reduce,
             "post_layernorm", "gate_proj", "up_proj", "act_fn", "down_proj", *reduce)
    return OpTemplate(pre_ops=("embedding",), block_ops=block,
                      post_ops=("final_layernorm", "lm_head"))


def moe_template(tpu: bool, tp: int, combine_alltoall: bool = True,
                 qk_norm: bool = False) -> OpTemplate:
    """MoE block (serving.md §6.2, §7): router `gate`, token dispatch, expert rows, combine."""
    reduce = (ALLREDUCE,) if tp > 1 else ()
    dispatch = (ALLTOALL,) if tp > 1 else ()
    combine = (ALLTOALL,) if tp > 1 and combine_alltoall else ()
    block = ("input_layernorm", *_projections(tpu, qk_norm), ATTENTION, "o_proj", *reduce,
             "post_layernorm", "gate", *dispatch, EXPERTS, *combine)
    return OpTemplate(pre_ops=("embedding",), block_ops=block,
                      post_ops=("final_layernorm", "lm_head"))
