"""The pricer interface and what every pricer shares: usage accounting of a plan."""

from __future__ import annotations

from typing import Protocol

from inference_serving.fabric import InstanceFabric
from inference_serving.iteration_cost import DeviceBusy, IterationCost, Usage
from llmsim_core.iteration_plan import COLLECTIVE, COMPUTE, HOST, PIM, SEND, IterationPlan


class Pricer(Protocol):
    """Turns an iteration plan started at `start_ns` into its `IterationCost`."""

    name: str

    def price(self, plan: IterationPlan, start_ns: int) -> IterationCost:
        """Duration and usage of `plan` started at `start_ns`."""
        ...


def plan_usage(plan: IterationPlan, fabric: InstanceFabric) -> Usage:
    """Per-device busy time and bytes per link and memory tier of a plan (every rank of the
    stage does the same work; each rank's own accesses and messages count once for it)."""
    busy = DeviceBusy()
    links: dict[str, int] = {}
    tiers: dict[str, int] = {}
    tp = plan.tp
    memory_ops = [*plan.loads, *((plan.store,) if plan.store else ())]
    for op in memory_ops:
        busy.memory_ns += fabric.memory_ns(op.target, op.nbytes)
        tier = f"{op.target}:{plan.node}"
        tiers[tier] = tiers.get(tier, 0) + tp * op.nbytes
    sends = [op for op in (plan.handoff, plan.forward) if op is not None]
    pim_busy = pim_bytes = 0
    for op, count in plan.ops():
        if op.kind == COMPUTE:
            busy.compute_ns += count * op.ns
        elif op.kind == PIM:
            work = op.pim
            overhead = fabric.memory_ns(HOST, work.nbytes)
            pim_busy += count * (int(work.used_ns.sum()) + len(work.channels) * overhead)
            pim_bytes += count * len(work.channels) * work.nbytes
        elif op.kind == COLLECTIVE:
            busy.comm_ns += count * fabric.collective_ns(op.target, op.nbytes)
            name = fabric.link_name("tp")
            links[name] = links.get(name, 0) + count * tp * op.nbytes
        elif op.kind == SEND:
            sends.extend([op] * count)
    for op in sends:
        busy.comm_ns += fabric.send_ns(op.target, op.nbytes)
        name = fabric.link_name(op.target)
        links[name] = links.get(name, 0) + tp * op.nbytes
    first = fabric.spec.first_npu + plan.stage * tp
    usage = Usage(dict.fromkeys(range(first, first + tp), busy), links, tiers)
    if plan.offloaded:
        tiers[f"pim:{plan.node}"] = pim_bytes
        usage.pim_busy_ns[plan.node] = pim_busy
    return usage

