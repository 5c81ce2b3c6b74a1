"""The replay pricer: every plan becomes per-NPU Chakra graphs replayed by the engine.

One engine per instance network, all sharing one cluster-wide memory state: the CPU-memory
FIFO of every node and every (node, PIM channel) FIFO keeps its calendar of accesses
across instances and iterations, so instances that use a shared memory at the same time queue
on it. Each iteration is replayed from its start time (`astra_sim.memory` says how accesses of
replays that overlap in time are ordered).

A plan's shared accesses are its loads, issued at the start and gating everything else, and
its stores, which nothing waits for; between them nothing else is shared on the
congestion-unaware network. So each distinct plan is replayed once on idle memory, and every
iteration of it books its loads on the shared FIFOs, shifts the rest by the time the loads
took beyond the idle replay's, and books its stores at their shifted issue times: the same
bookings and times a full replay would make. With the congestion-aware network, whose links
keep state, and for plans whose operators load their weights during the chain or offload
attention to PIM (its PIM nodes queue on the shared channel FIFOs), every iteration is replayed
in full.

Plans that differ only in their attention time (every batch has its own) share one set of
graphs: they are built once and replayed with the attention nodes' durations set per plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from astra_sim.chakra_et import Node
from astra_sim.engine import Engine
from astra_sim.memory import MemorySystem
from inference_serving.chakra_graph import engine_setup, plan_graphs
from inference_serving.fabric import InstanceFabric
from inference_serving.iteration_cost import IterationCost
from inference_serving.pricers.base import plan_usage
from llmsim_core.iteration_plan import IterationPlan
from llmsim_core.op_templates import ATTENTION

MEMO_LIMIT = 16384


def _skeleton(plan: IterationPlan) -> tuple[tuple, int]:
    """The plan without its attention time (a hashable key), and that time."""
    attention = 0
    groups = []
    for group in plan.groups:
        ops = group.ops
        for at, op in enumerate(ops):
            if op.name == ATTENTION:
                attention = op.ns
                ops = (*ops[:at], *ops[at + 1:])
                break
        groups.append((group.first, group.count, ops))
    return (plan.instance, plan.stage, plan.tokens, plan.requests, plan.loads, plan.store,
            plan.handoff, tuple(groups)), attention


@dataclass(frozen=True, slots=True)
class _IdleReplay:
    """One plan replayed from t = 0 on idle memory: its duration, when its loads released
    the chain, and its FIFO bookings (FIFO, issue time, length) of loads and of stores."""

    duration: int
    released: int
    loads: tuple[tuple[tuple, int, int], ...]
    stores: tuple[tuple[tuple, int, int], ...]


class ReplayPricer:
    """Prices plans by replaying their graphs on the cluster-wide engine state."""

    name = "replay"

    def __init__(self, fabrics: dict[int, InstanceFabric], num_nodes: int) -> None:
        self.fabrics = fabrics
        self.calendar: dict[tuple, list] = {}
        self.engines: dict[int, Engine] = {}
        for index, fabric in fabrics.items():
            config, memory = engine_setup(fabric, num_nodes, fabric.spec.pp, self.calendar)
            # ns-3 times the TP collectives (the instance's dimension 0) as in the closed form.
            model = (lambda kind, size, involved, f=fabric: f.collective_ns(kind, size)) \
                if fabric.backend == "ns3" else None
            self.engines[index] = Engine(config, memory, model)
        self._memo: dict[IterationPlan, _IdleReplay] = {}
        self._graphs: dict[tuple, tuple[dict[int, list[Node]], list[Node]]] = {}

    def price(self, plan: IterationPlan, start_ns: int) -> IterationCost:
        """Replay `plan` from `start_ns` on the shared engine state."""
        fabric = self.fabrics[plan.instance]
        engine = self.engines[plan.instance]
        if plan.stage == 0:  # a first stage starts at the serving clock: nothing is issued earlier
            engine.memory.forget_before(start_ns)
        if plan.offloaded:
            # Every PIM op is its own node on its (node, channel) FIFO: replayed as built
            # (a batch's PIM work is new each iteration, so nothing is memoized).
            result = engine.replay(plan_graphs(plan, fabric, stage_links=False), start_ns)
            duration = max(result.finish_ns.values()) - start_ns
        elif fabric.aware or plan.weight_loads:  # weight loads interleave with the chain
            result = engine.replay(self._graphs_of(plan, fabric), start_ns, symmetric=True)
            duration = max(result.finish_ns.values()) - start_ns
        else:
            duration = self._shifted(plan, fabric, engine, start_ns)
        cost = IterationCost(duration, account=partial(plan_usage, plan, fabric))
        if plan.forward is not None:
            src = plan.stage * plan.tp
            depart = start_ns + duration
            cost.forward_ns = engine.network.deliver(src, src + plan.tp, plan.forward.nbytes,
                                                     depart) - depart
        return cost

    def _shifted(self, plan: IterationPlan, fabric: InstanceFabric, engine: Engine,
                 start_ns: int) -> int:
        idle = self._memo.get(plan)
        if idle is None:
            idle = self._idle_replay(plan, fabric, engine)
            if len(self._memo) >= MEMO_LIMIT:
                self._memo.clear()
            self._memo[plan] = idle
        memory = engine.memory
        released = start_ns
        for key, issue, length in idle.loads:
            released = max(released, memory.book(key, start_ns + issue, length))
        shift = released - (start_ns + idle.released)
        finish = start_ns + idle.duration + shift
        for key, issue, length in idle.stores:
            finish = max(finish, memory.book(key, start_ns + issue + shift, length))
        return finish - start_ns

    def _graphs_of(self, plan: IterationPlan, fabric: InstanceFabric) -> dict[int, list[Node]]:
        """The plan's per-NPU graphs: built once per skeleton, attention durations set."""
        key, attention = _skeleton(plan)
        built = self._graphs.get(key)
        if built is None:
            graphs = plan_graphs(plan, fabric, stage_links=False)
            attention_nodes = [node for nodes in graphs.values() for node in nodes
                               if node.name.endswith("." + ATTENTION)]
            if len(self._graphs) >= MEMO_LIMIT:
                self._graphs.clear()
            built = self._graphs[key] = (graphs, attention_nodes)
        for node in built[1]:
            node.duration_micros = attention
        return built[0]

    def _idle_replay(self, plan: IterationPlan, fabric: InstanceFabric,
                     engine: Engine) -> _IdleReplay:
        shared = engine.memory
        engine.memory = MemorySystem(tiers=shared.tiers, log=[])
        try:
            result = engine.replay(self._graphs_of(plan, fabric), 0, symmetric=True)
            log = engine.memory.log
        finally:
            engine.memory = shared
        loads = tuple((key, issue, end - begin) for key, begin, end, issue in log if issue == 0)
        stores = tuple((key, issue, end - begin) for key, begin, end, issue in log if issue > 0)
        released = max((end for _, _, end, issue in log if issue == 0), default=0)
        return _IdleReplay(max(result.finish_ns.values()), released, loads, stores)
