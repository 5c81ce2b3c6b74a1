"""The iteration plan: what one iteration of one instance (or pipeline stage) does on each rank.

`inference_serving.plan_builder` fills a plan from a scheduled batch; every consumer reads that
one plan: the pricers (closed form, engine replay, external ASTRA-Sim binary), the Chakra
exporter and the calibration's whole-iteration error. All TP ranks of a stage run the same
chain (MoE expert rows are charged at the slowest rank's time, §7), so a plan describes one
rank; consecutive identical transformer blocks are one `LayerGroup` with a count.

Plans, groups and ops are values: never changed once built (builders and pricers cache them,
the replay and external pricers by value). They are not `frozen` dataclasses because one plan
is built per iteration and a frozen constructor costs six times as much.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from llmsim_core.op_templates import ATTENTION, COLLECTIVE_KIND, EXPERT_ROWS, EXPERTS, OpTemplate

COMPUTE, COLLECTIVE, SEND, LOAD, STORE = "compute", "collective", "send", "load", "store"
PIM, PIM_WAIT = "pim", "pim_wait"  # launch a PIM group; wait for the last one launched
# Weight loads inside the chain (serving.md §6.6, §7): a prefetch is issued at the iteration's
# start, a fetch when the chain reaches it; the next compute node waits for either.
PREFETCH, FETCH = "prefetch", "fetch"
WEIGHT_LOADS = (PREFETCH, FETCH)
HOST = "host"  # the node's CPU memory (one FIFO per node)
LOCAL_MEM = "local"  # the NPU's own device memory (no queue)
CXL_PREFIX = "cxl:"  # "cxl:<k>": device k of the cluster's CXL pool (one FIFO per device)
PD_LINK, STAGE_LINK = "pd", "pp"


def cxl_target(device: int) -> str:
    """The memory-tier name of CXL device `device`."""
    return f"{CXL_PREFIX}{device}"


def cxl_device(target: str) -> int | None:
    """The CXL device a memory-tier name addresses, or None for another tier."""
    return int(target[len(CXL_PREFIX):]) if target.startswith(CXL_PREFIX) else None
@dataclass(frozen=True, slots=True, eq=False)
class PimWork:
    """One layer's PIM attention ops of one (sub-)batch (serving.md §10).

    Op i runs `ns[i]` ns of PIM compute on channel `channels[i]` of the node's host memory and
    moves `nbytes` over that channel. Per used channel `used[j]`: its ops' compute `used_ns[j]`
    and their number `used_ops[j]`. Compared by identity: a batch's work is built once.
    """

    channels: np.ndarray
    ns: np.ndarray
    nbytes: int
    used: np.ndarray
    used_ns: np.ndarray
    used_ops: np.ndarray


@dataclass(slots=True, unsafe_hash=True)
class PlanOp:
    """One node of a rank's chain.

    compute: `ns` at `tokens` tokens; collective: `target` is the collective kind
    (`all_reduce`, `all_to_all`) over the TP group; send: `nbytes` to the peer over link
    `target` on the rank's communication slot, overlapping compute; load/store: `nbytes` from
    or to memory tier `target`, issued by all `tp` ranks together (one access each, FIFO);
    prefetch/fetch: one rank's `nbytes` of weights from tier `target` for the next compute node
    (every rank loads its own share; on a shared FIFO the ranks' accesses queue back to back);
    pim: launches `pim` (one op per channel FIFO of the node) when the chain reaches it, without
    holding the chain; pim_wait: the chain waits for the last `pim` group of sub-batch `sub`.
    """

    kind: str
    name: str
    ns: int = 0
    nbytes: int = 0
    tokens: int = 0
    target: str = ""
    sub: int = 0
    pim: PimWork | None = None


@dataclass(slots=True, unsafe_hash=True)
class LayerGroup:
    """`count` consecutive layers running the same `ops`; `first` is the first transformer
    block's index (-1 for the operators before and after the blocks)."""

    first: int
    count: int
    ops: tuple[PlanOp, ...]


@dataclass(slots=True, unsafe_hash=True)
class IterationPlan:
    """One iteration of one pipeline stage of an instance, as every one of its `tp` ranks runs it.

    `loads` are issued at the start and gate the chain; `receive` (later pipeline stages) is
    the previous stage's activations; `groups` is the compute chain with its collectives and
    sends; `store` follows the chain; `handoff` (P/D prefill) is sent after the chain on the
    communication slot and belongs to the iteration; `forward` (pipeline) carries the stage's
    activations to the next stage after the stage has finished.
    """

    instance: int
    stage: int
    node: int
    tp: int
    tokens: int
    requests: int
    loads: tuple[PlanOp, ...]
    groups: tuple[LayerGroup, ...]
    receive: PlanOp | None = None
    store: PlanOp | None = None
    handoff: PlanOp | None = None
    forward: PlanOp | None = None
    weight_loads: bool = False  # the chain holds prefetch or fetch nodes
    offloaded: bool = False  # the chain holds `pim` / `pim_wait` ops

    def ops(self) -> list[tuple[PlanOp, int]]:
        """Every chain operator with the number of times it runs (groups unrolled by count)."""
        return [(op, group.count) for group in self.groups for op in group.ops]


def compute(name: str, ns: int, tokens: int) -> PlanOp:
    """A compute node."""
    return PlanOp(COMPUTE, name, ns=ns, tokens=tokens)


def edge_group(names: Sequence[str], tokens: int, requests: int,
               op_ns: Callable[[str, int], int],
               loads: Mapping[str, PlanOp] | None = None) -> LayerGroup:
    """The operators before or after the blocks, each after its weight load if it has one;
    lm_head runs once per request (§6.1)."""
    ops: list[PlanOp] = []
    for op in names:
        if loads and op in loads:
            ops.append(loads[op])
        n = requests if op == "lm_head" else tokens
        ops.append(compute(op, op_ns(op, n), n))
    return LayerGroup(-1, 1, tuple(ops))


def block_ops(template: OpTemplate, tokens: int, op_ns: Callable[[str, int], int],
              attention_ns: int, experts_ns: int, collective_bytes: int,
              kv_send_bytes: int = 0, oproj_extra_ns: int = 0,
              loads: Mapping[str, PlanOp] | None = None,
              expert_fetch: PlanOp | None = None) -> tuple[PlanOp, ...]:
    """One transformer block: the template's operators at `tokens` tokens, attention and the
    expert rows as single nodes, TP collectives of `collective_bytes`, a P/D KV send after
    `v_proj` and a fitted overhead after `o_proj` when those are non-zero; an operator with a
    weight load in `loads` comes after it, and `expert_fetch` follows the router `gate`."""
    ops: list[PlanOp] = []
    for op in template.block_ops:
        if loads and op in loads:
            ops.append(loads[op])
        if op == ATTENTION:
            ops.append(compute(op, attention_ns, tokens))
        elif op == EXPERTS:
            ops.append(compute("experts", experts_ns, tokens))
        elif op in COLLECTIVE_KIND:
            kind = COLLECTIVE_KIND[op]
            ops.append(PlanOp(COLLECTIVE, kind, nbytes=collective_bytes, target=kind))
        else:
            ops.append(compute(op, op_ns(op, tokens), tokens))
        if op == "gate" and expert_fetch is not None:
            ops.append(expert_fetch)
        if op == "v_proj" and kv_send_bytes:
            ops.append(PlanOp(SEND, "kv_send", nbytes=kv_send_bytes, target=PD_LINK))
        elif op == "o_proj" and oproj_extra_ns:
            ops.append(compute("pd_overhead", oproj_extra_ns, tokens))
    return tuple(ops)


def rank_expert_calls(counts: Sequence[int], tp: int) -> list[dict[int, int]]:
    """Per TP rank, how many of its experts run at each token count in one layer.

    Expert e lives on rank e mod tp; a rank runs its experts' w1, w3 and w2 rows in turn, and
    an expert that received no token still costs one token (§7)."""
    ranks: list[dict[int, int]] = [{} for _ in range(tp)]
    for expert, n in enumerate(counts):
        calls = ranks[expert % tp]
        n = max(int(n), 1)
        calls[n] = calls.get(n, 0) + 1
    return ranks


def slowest_rank_ns(counts: Sequence[int], tp: int, row_ns: Callable[[str, int], int]) -> int:
    """One layer's expert time: the slowest rank's sum of expert rows."""
    return max(sum(calls * sum(row_ns(row, n) for row in EXPERT_ROWS)
                   for n, calls in rank.items())
               for rank in rank_expert_calls(counts, tp))
