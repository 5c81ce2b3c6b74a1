"""The pricer interface and what every pricer shares: usage accounting of a plan."""

from __future__ import annotations

from typing import Protocol

from inference_serving.fabric import InstanceFabric
from inference_serving.iteration_cost import DeviceBusy, IterationCost, Usage
from llmsim_core.iteration_plan import (
    COLLECTIVE,
    COMPUTE,
    CXL_PREFIX,
    HOST,
    LOCAL_MEM,
    PIM,
    SEND,
    WEIGHT_LOADS,
    IterationPlan,
)

ALL_REDUCE = "all_reduce"
# The per-iteration token-id staging through host memory (not DRAM traffic the power model
# charges, serving.md §11).
STAGING_OPS = frozenset({"input_load", "output_store"})
# The fitted P/D o_proj overhead node of `block_ops`: NPU time, but no NPU work (§6.7, §11).
OVERHEAD_OP = "pd_overhead"


class Pricer(Protocol):
    """Turns an iteration plan started at `start_ns` into its `IterationCost`.

    A pricer may also offer `price_family(family, stage, start_ns)`, the cost of one stage of
    a `PlanFamily` (plan_builder.py) without the plan being built; instances then hand it
    their streaming batches that way (the closed form does).
    """

    name: str

    def price(self, plan: IterationPlan, start_ns: int) -> IterationCost:
        """Duration and usage of `plan` started at `start_ns`."""
        ...


def weight_tier_name(target: str, plan: IterationPlan, fabric: InstanceFabric) -> str:
    """Name of a weight load's tier in `Usage.tier_bytes`: `host:<node>`, `cxl:<k>` (shared
    cluster-wide) or `local:<instance>`."""
    if target.startswith(CXL_PREFIX):
        return target
    owner = fabric.spec.instance_id if target == LOCAL_MEM else plan.node
    return f"{target}:{owner}"


def plan_usage(plan: IterationPlan, fabric: InstanceFabric) -> Usage:
    """Per-device busy time and bytes per link and memory tier of a plan (every rank of the
    stage does the same work; each rank's own accesses and messages count once for it)."""
    busy = DeviceBusy()
    links: dict[str, int] = {}
    tiers: dict[str, int] = {}
    ring: dict[str, float] = {}
    staging = overhead = 0
    tp = plan.tp
    memory_ops = [*plan.loads, *((plan.store,) if plan.store else ())]
    for op in memory_ops:
        busy.memory_ns += fabric.memory_ns(op.target, op.nbytes)
        tier = f"{op.target}:{plan.node}"
        tiers[tier] = tiers.get(tier, 0) + tp * op.nbytes
        if op.name in STAGING_OPS:
            staging += tp * op.nbytes
    sends = [op for op in (plan.handoff, plan.forward) if op is not None]
    pim_busy = pim_bytes = 0
    for op, count in plan.ops():
        if op.kind == COMPUTE:
            busy.compute_ns += count * op.ns
            if op.name == OVERHEAD_OP:
                overhead += count * op.ns
        elif op.kind == PIM:
            work = op.pim
            access = fabric.memory_ns(HOST, work.nbytes)
            pim_busy += count * (int(work.used_ns.sum()) + len(work.channels) * access)
            pim_bytes += count * len(work.channels) * work.nbytes
        elif op.kind == COLLECTIVE:
            busy.comm_ns += count * fabric.collective_ns(op.target, op.nbytes)
            name = fabric.link_name("tp")
            links[name] = links.get(name, 0) + count * tp * op.nbytes
            share = (2 if op.target == ALL_REDUCE else 1) * (tp - 1) / tp
            ring[name] = ring.get(name, 0.0) + count * share * op.nbytes
        elif op.kind == SEND:
            sends.extend([op] * count)
        elif op.kind in WEIGHT_LOADS:
            busy.memory_ns += count * fabric.memory_ns(op.target, op.nbytes)
            tier = weight_tier_name(op.target, plan, fabric)
            tiers[tier] = tiers.get(tier, 0) + count * tp * op.nbytes
    for op in sends:
        busy.comm_ns += fabric.send_ns(op.target, op.nbytes)
        name = fabric.link_name(op.target)
        links[name] = links.get(name, 0) + tp * op.nbytes
        ring[name] = ring.get(name, 0.0) + op.nbytes
    first = fabric.spec.first_npu + plan.stage * tp
    usage = Usage(dict.fromkeys(range(first, first + tp), busy), links, tiers, ring_bytes=ring,
                  staging_bytes=staging, overhead_ns=overhead)
    if plan.offloaded:
        tiers[f"pim:{plan.node}"] = pim_bytes
        usage.pim_busy_ns[plan.node] = pim_busy
    return usage

