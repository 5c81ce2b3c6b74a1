"""The closed-form pricer: lockstep arithmetic over the plan (the fast path).

Every TP rank runs the same chain, so one rank's timeline is the iteration's (engine.md §11):
the start loads of all ranks queue back to back on the node's memory FIFO and release the
ranks together; compute adds up; a collective starts when the rank's communication slot is
free (P/D KV sends occupy it while compute goes on); the output store of all ranks follows the
chain and the P/D token hand-off follows the last send.

The node's memory FIFOs are shared by its instances: loads and stores are booked on the same
cluster-wide calendar the replay pricer uses (`astra_sim.memory`), so an instance whose loads
wait behind another's starts its chain later. A plan's shared accesses are its start loads and
its end stores, and between them nothing is shared on the congestion-unaware network, so this
equals the engine replay on every plan (tested on every shipped cluster config). A plan with
PIM attention offload runs its chain through `pim_walk`, the same replay computed per PIM group.

Plans with weight loads (placement off the device, local offloading) are walked operator by
operator instead: their prefetches are booked at the start in chain order on their FIFOs (host
memory of the node, one CXL device each), a fetch when the chain reaches it, and each operator
starts once its own load has arrived, as the engine replay orders them.

A streaming batch comes as a `PlanFamily` (`price_family`): without sends a chain is a plain
sum, so a stage of the family costs a fixed time plus its attention nodes' plus its
per-request tail, learnt once from the first member's built plan.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from astra_sim.memory import CXL, REMOTE, MemorySystem
from inference_serving.fabric import InstanceFabric
from inference_serving.iteration_cost import IterationCost, Usage
from inference_serving.plan_builder import PlanFamily
from inference_serving.pricers.base import plan_usage
from inference_serving.pricers.pim_walk import PimChannels, offloaded_chain
from llmsim_core.iteration_plan import (
    COLLECTIVE,
    COMPUTE,
    CXL_PREFIX,
    FETCH,
    HOST,
    PREFETCH,
    SEND,
    IterationPlan,
    LayerGroup,
    PlanOp,
)
from llmsim_core.op_templates import ATTENTION

CHAIN_CACHE = 8192  # chain results kept before the cache starts over


class ClosedFormPricer:
    """Prices plans with the lockstep closed form."""

    name = "closed-form"

    def __init__(self, fabrics: dict[int, InstanceFabric]) -> None:
        self.fabrics = fabrics
        self.memory = MemorySystem()
        self.pim = PimChannels()
        self._chains: dict[int, tuple[IterationPlan, int, int]] = {}
        self._families: dict[tuple, tuple[IterationPlan | None, int, int]] = {}
        self._groups: dict[int, tuple[LayerGroup, int]] = {}

    def _chain(self, plan: IterationPlan, fabric: InstanceFabric) -> tuple[int, int]:
        """(end of the chain, end of its last message) after the loads release it; memoized
        per plan object (the plan builder hands out the same object for the same shape)."""
        cached = self._chains.get(id(plan))
        if cached is not None and cached[0] is plan:
            return cached[1], cached[2]
        t = comm_free = 0
        for group in plan.groups:
            ops = group.ops
            # One pass sums a layer; a send (or a slot still busy with one, for a collective)
            # makes the layers wait on the communication slot, so they are walked instead.
            layer = 0
            walk = False
            for op in ops:
                kind = op.kind
                if kind == COMPUTE:
                    layer += op.ns
                elif kind == COLLECTIVE and comm_free <= t:
                    layer += fabric.collective_ns(op.target, op.nbytes)
                else:
                    walk = True
                    break
            if not walk:
                t += group.count * layer
                if comm_free < t:
                    comm_free = t
                continue
            if any(op.kind == SEND for op in ops):
                for _ in range(group.count):
                    t, comm_free = _walk(ops, fabric, t, comm_free)
                continue
            # Without sends the slot is free after the first layer: the rest are plain sums.
            t, comm_free = _walk(ops, fabric, t, comm_free)
            layer = 0
            for op in ops:
                layer += op.ns if op.kind == COMPUTE else \
                    fabric.collective_ns(op.target, op.nbytes)
            t += (group.count - 1) * layer
            if comm_free < t:
                comm_free = t
        if len(self._chains) >= CHAIN_CACHE:
            self._chains.clear()
        self._chains[id(plan)] = (plan, t, comm_free)
        return t, comm_free

    def price(self, plan: IterationPlan, start_ns: int) -> IterationCost:
        """Duration of `plan` started at `start_ns` (its memory accesses queue on the node's
        shared FIFO)."""
        fabric = self.fabrics[plan.instance]
        released = self._release(plan, fabric, start_ns)
        if plan.offloaded:
            t, comm_free = offloaded_chain(plan, fabric, self.pim, released)
            t -= start_ns
            comm_free -= start_ns
        elif plan.weight_loads:
            t = comm_free = released - start_ns
            t, comm_free = self._loaded_chain(plan, fabric, start_ns, t)
        else:
            t, comm_free = self._chain(plan, fabric)
            t += released - start_ns
            comm_free += released - start_ns
        return self._finish(plan, fabric, start_ns, t, comm_free, plan.store,
                            partial(plan_usage, plan, fabric))

    def price_family(self, family: PlanFamily, stage: int, start_ns: int) -> IterationCost:
        """`price` of stage `stage` of a family's plans, from the chain of the first member
        priced: without sends a stage's chain is a fixed time, plus its attention nodes', plus
        (last stage) its per-request tail, so the member's own plan is not built."""
        fabric = self.fabrics[family.instance]
        last = stage == family.stages - 1
        key = (family.instance, stage, family.key)
        known = self._families.get(key)
        if known is None:
            plan = family.plans()[stage]
            known = linear_chain(plan, self._chain(plan, fabric)[0], family.attention_ns,
                                 self._tail_ns(family, fabric) if last else 0)
            if len(self._families) >= CHAIN_CACHE:
                self._families.clear()
            self._families[key] = known
        plan, fixed, per_attention = known
        if plan is None:
            return self.price(family.plans()[stage], start_ns)
        released = self._release(plan, fabric, start_ns)
        t = fixed + per_attention * family.attention_ns + released - start_ns
        if last:
            t += self._tail_ns(family, fabric)
        return self._finish(plan, fabric, start_ns, t, t, family.store if last else plan.store,
                            partial(family_usage, family, stage, fabric))

    def _tail_ns(self, family: PlanFamily, fabric: InstanceFabric) -> int:
        """Time of the family member's operators after the blocks."""
        per_token, per_request = family.tail
        return self._group_ns(per_token, fabric) + self._group_ns(per_request, fabric)

    def _group_ns(self, group: LayerGroup, fabric: InstanceFabric) -> int:
        """Time of a group without sends or weight loads (memoized per group object)."""
        cached = self._groups.get(id(group))
        if cached is not None and cached[0] is group:
            return cached[1]
        layer = 0
        for op in group.ops:
            layer += op.ns if op.kind == COMPUTE else fabric.collective_ns(op.target, op.nbytes)
        if len(self._groups) >= CHAIN_CACHE:
            self._groups.clear()
        self._groups[id(group)] = (group, group.count * layer)
        return group.count * layer

    def _release(self, plan: IterationPlan, fabric: InstanceFabric, start_ns: int) -> int:
        """When the plan's start loads (on the FIFO of each load's tier) release its chain."""
        if plan.stage == 0:  # a first stage starts at the serving clock: nothing is issued earlier
            self.memory.forget_before(start_ns)
        released = start_ns
        for op in plan.loads:
            released = max(released, self._load(plan, fabric, op, start_ns))
        return released

    def _finish(self, plan: IterationPlan, fabric: InstanceFabric, start_ns: int, t: int,
                comm_free: int, store: PlanOp | None,
                account: Callable[[], Usage]) -> IterationCost:
        """The cost of a plan whose chain ended `t` after `start_ns` with its last message
        ending at `comm_free`: the output `store` and the P/D hand-off follow."""
        end = t
        if store is not None:
            end = self._load(plan, fabric, store, start_ns + t) - start_ns
        if plan.handoff is not None:
            comm_free = max(t, comm_free) + fabric.send_ns(plan.handoff.target,
                                                           plan.handoff.nbytes)
            end = max(end, comm_free)
        cost = IterationCost(end, account=account)
        if plan.forward is not None:
            cost.forward_ns = fabric.send_ns(plan.forward.target, plan.forward.nbytes)
        return cost

    def _load(self, plan: IterationPlan, fabric: InstanceFabric, op: PlanOp, issue: int) -> int:
        """End of one access (a weight load, a start load or the store) issued at `issue`:
        every rank's share back to back on a shared FIFO, each rank on its own in device
        memory."""
        duration = fabric.memory_ns(op.target, op.nbytes)
        if op.target == HOST:
            return self.memory.book((REMOTE, plan.node), issue, plan.tp * duration)
        if op.target.startswith(CXL_PREFIX):
            return self.memory.book((CXL, int(op.target[len(CXL_PREFIX):])), issue,
                                    plan.tp * duration)
        return issue + duration

    def _loaded_chain(self, plan: IterationPlan, fabric: InstanceFabric, start_ns: int,
                      t: int) -> tuple[int, int]:
        """(end of the chain, end of its last message) of a plan with weight loads, the chain
        starting `t` after `start_ns`."""
        prefetched = [self._load(plan, fabric, op, start_ns)
                      for group in plan.groups for _ in range(group.count)
                      for op in group.ops if op.kind == PREFETCH]
        comm_free = t
        waits = 0  # absolute time the next compute operator's weights are in
        k = 0
        for group in plan.groups:
            ops = group.ops
            for _ in range(group.count):
                for op in ops:
                    kind = op.kind
                    if kind == COMPUTE:
                        t = max(t, waits - start_ns) + op.ns
                        waits = 0
                    elif kind == PREFETCH:
                        waits = max(waits, prefetched[k])
                        k += 1
                    elif kind == FETCH:
                        waits = max(waits, self._load(plan, fabric, op, start_ns + t))
                    elif kind == COLLECTIVE:
                        t = max(t, comm_free) + fabric.collective_ns(op.target, op.nbytes)
                        comm_free = t
                    else:
                        comm_free = max(t, comm_free) + fabric.send_ns(op.target, op.nbytes)
        return t, max(comm_free, t)


def linear_chain(plan: IterationPlan, chain_ns: int, attention_ns: int,
                 tail_ns: int) -> tuple[IterationPlan | None, int, int]:
    """(plan, fixed ns, attention nodes) of a chain that took `chain_ns` with `attention_ns`
    per attention node and `tail_ns` in its per-request tail; (None, 0, 0) when sends make it
    more than a sum."""
    nodes = 0
    for group in plan.groups:
        for op in group.ops:
            if op.kind == SEND:
                return None, 0, 0
            if op.kind == COMPUTE and op.name == ATTENTION:
                nodes += group.count
    return plan, chain_ns - nodes * attention_ns - tail_ns, nodes


def family_usage(family: PlanFamily, stage: int, fabric: InstanceFabric) -> Usage:
    """`plan_usage` of a family member's stage (its plans built on first use)."""
    return plan_usage(family.plans()[stage], fabric)


def _walk(ops: tuple, fabric: InstanceFabric, t: int, comm_free: int) -> tuple[int, int]:
    """One layer with sends: collectives wait for the communication slot, sends take it."""
    for op in ops:
        if op.kind == COMPUTE:
            t += op.ns
        elif op.kind == COLLECTIVE:
            t = max(t, comm_free) + fabric.collective_ns(op.target, op.nbytes)
            comm_free = t
        else:
            comm_free = max(t, comm_free) + fabric.send_ns(op.target, op.nbytes)
    return t, comm_free
