"""Iteration plans with decode attention offloaded to PIM (serving.md §10).

Per layer the PIM group (one op per placement, on its channel's FIFO) is launched after
`rope`; the NPU keeps only the prefills' attention; `o_proj` waits for the group. With
sub-batch interleaving the batch is split in two load-balanced sub-batches whose operators
alternate: B1 embedding and pre-attention, B2 the same; then per layer B1 post-attention, FFN
and next pre-attention, B2 the same; finally each sub-batch's last post-attention, FFN,
final norm and lm_head. Each sub-batch's compute only waits for its own PIM group, so one
sub-batch's NPU work overlaps the other's PIM work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from inference_serving.pim_offload import place, split_batch
from inference_serving.scheduler.base import Batch
from llm_profile.perf_model import AttentionBatch
from llmsim_core.iteration_plan import (
    PIM,
    PIM_WAIT,
    IterationPlan,
    LayerGroup,
    PlanOp,
    compute,
)
from llmsim_core.op_templates import ATTENTION

if TYPE_CHECKING:  # the plan builder imports this module
    from inference_serving.plan_builder import PlanBuilder


@dataclass(frozen=True, slots=True)
class _Sub:
    """One sub-batch's operators: `head` (embedding), `runs` (blocks as (first, count, up to
    rope, from o_proj)), `launch` (its PIM group), `attn` (the prefills' NPU attention),
    `wait` (for the PIM group), `tail` (final norm and lm_head)."""

    tokens: int
    requests: int
    head: tuple[PlanOp, ...]
    runs: tuple[tuple, ...]
    launch: tuple[PlanOp, ...]
    attn: tuple[PlanOp, ...]
    wait: tuple[PlanOp, ...]
    tail: tuple[PlanOp, ...]

    @property
    def mid(self) -> tuple[PlanOp, ...]:
        """Between rope and the wait: the PIM launch, then the NPU attention beside it."""
        return (*self.launch, *self.attn)


def _sub_batch(builder: PlanBuilder, batch: Batch, entries: list[int], sub: int) -> _Sub:
    prefill_q: list[int] = []
    prefill_kv: list[int] = []
    lengths: list[int] = []
    for i in entries:
        request = batch.requests[i]
        if batch.decode[i]:
            lengths.append(request.num_tokens)
        else:
            prefill_q.append(batch.tokens[i])
            prefill_kv.append(request.computed)
    tokens = sum(batch.tokens[i] for i in entries)
    requests = len(entries)
    launch: tuple[PlanOp, ...] = ()
    attn: tuple[PlanOp, ...] = ()
    wait: tuple[PlanOp, ...] = ()
    setup = builder.pim
    if lengths:
        # Existing-simulator defect: under interleaving one placement per decode.
        copies = 1 if setup.defects and setup.interleave else None
        work = place(lengths, setup, copies)
        launch = (PlanOp(PIM, "attn_pim", tokens=len(lengths), sub=sub, pim=work),)
        wait = (PlanOp(PIM_WAIT, "pim_wait", sub=sub),)
    if prefill_q:  # the NPU charges only the prefills' attention (the defect: decodes too)
        decodes = tuple(lengths) if setup.defects else ()
        ns = builder.perf.attention_ns(AttentionBatch(tuple(prefill_q), tuple(prefill_kv),
                                                      decodes))
        attn = (compute(ATTENTION, ns, tokens),)
    return _Sub(tokens, requests, builder.edge("pre", tokens, requests).ops,
                builder.block_parts(tokens, 0, builder.model.num_layers), launch, attn, wait,
                builder.edge("post", tokens, requests).ops)


def offloaded_plan(builder: PlanBuilder, batch: Batch) -> IterationPlan:
    """The plan of a batch with decodes on an offloading instance (one stage, one rank)."""
    tokens, requests = batch.total_tokens, len(batch.requests)
    everything = list(range(requests))
    groups: tuple[LayerGroup, ...]
    parts = None
    if builder.pim.interleave and requests > 1:
        loads = [n if not d else r.num_tokens
                 for r, n, d in zip(batch.requests, batch.tokens, batch.decode, strict=True)]
        parts = split_batch(loads, [r.arrival for r in batch.requests])
    if parts is not None and parts[0] and parts[1]:
        one, two = (_sub_batch(builder, batch, part, k) for k, part in enumerate(parts))
        layers = builder.model.num_layers
        (_, _, pre1, post1), = one.runs
        (_, _, pre2, post2), = two.runs
        groups = (LayerGroup(-1, 1, (*one.head, *pre1, *one.mid, *two.head, *pre2, *two.mid)),
                  *((LayerGroup(0, layers - 1, (*one.wait, *post1, *pre1, *one.mid, *two.wait,
                                                *post2, *pre2, *two.mid)),)
                    if layers > 1 else ()),
                  LayerGroup(-1, 1, (*one.wait, *post1, *one.tail, *two.wait, *post2,
                                     *two.tail)))
    else:
        sub = _sub_batch(builder, batch, everything, 0)
        # Existing-simulator behaviour (compat): the NPU attention waits for the PIM group.
        middle = (*sub.launch, *sub.wait, *sub.attn) if builder.pim.defects else \
            (*sub.mid, *sub.wait)
        groups = (LayerGroup(-1, 1, sub.head),
                  *(LayerGroup(index, n, (*pre, *middle, *post))
                    for index, n, pre, post in sub.runs),
                  LayerGroup(-1, 1, sub.tail))
    return IterationPlan(builder.instance, 0, builder.node, builder.tp, tokens, requests,
                         builder.start_loads(tokens, batch), groups,
                         store=builder.output_store(tokens, requests), offloaded=True)
