"""The replay pricer: every plan becomes per-NPU Chakra graphs replayed by the engine.

One engine per instance network, all sharing one cluster-wide memory state: the CPU-memory
FIFO of every node (and later CXL devices and PIM channels) keeps its calendar of accesses
across instances and iterations, so instances that use a shared memory at the same time queue
on it. Each iteration is replayed from its start time (astra_sim.memory says how accesses of
replays that overlap in time are ordered). A plan replayed before while the FIFOs it uses were
idle gives the same result again when they are idle: that replay is reused.
"""

from __future__ import annotations

from functools import partial

from astra_sim.engine import Engine
from astra_sim.memory import REMOTE, MemorySystem
from inference_serving.chakra_graph import engine_setup, plan_graphs
from inference_serving.fabric import InstanceFabric
from inference_serving.iteration_cost import IterationCost
from inference_serving.pricers.base import plan_usage
from llmsim_core.iteration_plan import IterationPlan

MEMO_LIMIT = 16384


class ReplayPricer:
    """Prices plans by replaying their graphs on the cluster-wide engine state."""

    name = "replay"

    def __init__(self, fabrics: dict[int, InstanceFabric], num_nodes: int) -> None:
        self.fabrics = fabrics
        self.calendar: dict[tuple, list] = {}
        self.engines: dict[int, Engine] = {}
        for index, fabric in fabrics.items():
            config, memory = engine_setup(fabric, num_nodes, fabric.spec.pp, self.calendar)
            self.engines[index] = Engine(config, memory)
        self._memo: dict[IterationPlan, tuple[int, list]] = {}

    def price(self, plan: IterationPlan, start_ns: int) -> IterationCost:
        """Replay `plan` from `start_ns` on the shared engine state."""
        fabric = self.fabrics[plan.instance]
        engine = self.engines[plan.instance]
        memory = engine.memory
        if plan.stage == 0:  # a first stage starts at the serving clock: nothing is issued earlier
            memory.forget_before(start_ns)
        idle = not fabric.aware and not memory.busy_after((REMOTE, plan.node), start_ns)
        hit = self._memo.get(plan) if idle else None
        if hit is not None:
            duration, bookings = hit
            for key, issue, length in bookings:
                memory.book(key, start_ns + issue, length)
        else:
            duration = self._replay(plan, fabric, engine, memory, start_ns, idle)
        cost = IterationCost(duration, account=partial(plan_usage, plan, fabric))
        if plan.forward is not None:
            src = plan.stage * plan.tp
            depart = start_ns + duration
            cost.forward_ns = engine.network.deliver(src, src + plan.tp, plan.forward.nbytes,
                                                     depart) - depart
        return cost

    def _replay(self, plan: IterationPlan, fabric: InstanceFabric, engine: Engine,
                memory: MemorySystem, start_ns: int, remember: bool) -> int:
        memory.log = [] if remember else None
        result = engine.replay(plan_graphs(plan, fabric, stage_links=False), start_ns)
        duration = max(result.finish_ns.values()) - start_ns
        if remember:
            bookings = [(key, issue - start_ns, end - begin)
                        for key, begin, end, issue in memory.log]
            if len(self._memo) >= MEMO_LIMIT:
                self._memo.clear()
            self._memo[plan] = (duration, bookings)
        memory.log = None
        return duration
