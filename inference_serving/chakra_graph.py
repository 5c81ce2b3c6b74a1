"""Per-NPU Chakra graphs of an iteration plan, and their export (`--export-chakra DIR`).

The graphs hold exactly what the plan holds: the start loads (a joint access of the stage's TP
ranks, `pg_name` = the stage's group), the compute chain with its TP collectives, P/D KV sends
after `v_proj` and the token hand-off at the end (with the paired receivers' RECV nodes when
asked), stage-to-stage sends and receives, the output store, and with attention offloading one
PIM_COMP_NODE per PIM op on its (node, channel) FIFO, which the next chain node (`o_proj`)
depends on. NPU ids are the instance's
engine network (`InstanceFabric.engine_dims`): stage · tp + rank, P/D receivers at rank + tp.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from astra_sim.chakra_et import COLLECTIVE_TYPES, Attr, Node
from astra_sim.engine import EngineConfig
from astra_sim.export import export
from astra_sim.memory import CXL, LOCAL, REMOTE, MemorySystem
from inference_serving.fabric import InstanceFabric, cxl_tier, host_tier, local_tier
from inference_serving.scheduler.base import Batch
from llmsim_core.errors import InputError
from llmsim_core.iteration_plan import (
    COLLECTIVE,
    COMPUTE,
    CXL_PREFIX,
    LOAD,
    LOCAL_MEM,
    PIM,
    PIM_WAIT,
    PREFETCH,
    SEND,
    WEIGHT_LOADS,
    IterationPlan,
    PlanOp,
)

if TYPE_CHECKING:  # the instance module imports the pricers, which import this module
    from inference_serving.instance import Instance

COLLECTIVE_CODES = {"all_reduce": COLLECTIVE_TYPES["ALL_REDUCE"],
                    "all_to_all": COLLECTIVE_TYPES["ALL_TO_ALL"]}


def stage_group(stage: int) -> str:
    """`pg_name` of one pipeline stage's TP ranks."""
    return f"stage{stage}"


class _Graph:
    """Node list under construction for one NPU."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []

    def add(self, name: str, kind: str, deps: list[int], duration: int = 0,
            attrs: list[Attr] | None = None) -> int:
        nid = len(self.nodes) + 1
        self.nodes.append(Node(nid, name, kind, data_deps=deps, duration_micros=duration,
                               attrs=attrs or []))
        return nid


def _memory(graph: _Graph, op: PlanOp, device: int, group: str, deps: list[int]) -> int:
    kind = "MEM_LOAD_NODE" if op.kind in (LOAD, *WEIGHT_LOADS) else "MEM_STORE_NODE"
    loc = REMOTE
    if op.target == LOCAL_MEM:
        loc, device, group = LOCAL, 0, ""  # every NPU reads its own memory
    elif op.target.startswith(CXL_PREFIX):
        loc, device = CXL, int(op.target[len(CXL_PREFIX):])
    attrs = [Attr("tensor_size", "uint64", op.nbytes), Attr("tensor_loc", "uint32", loc),
             Attr("tensor_device", "uint32", device)]
    if group:
        attrs.append(Attr("pg_name", "string", group))
    return graph.add(op.name, kind, deps, attrs=attrs)


def _pim(graph: _Graph, name: str, op: PlanOp, device: int, deps: list[int]) -> list[int]:
    """One PIM_COMP_NODE per op of the group, on its (device, channel) FIFO."""
    work = op.pim
    return [graph.add(f"{name}.{i}", "PIM_COMP_NODE", deps, duration=ns, attrs=[
        Attr("tensor_size", "uint64", work.nbytes), Attr("tensor_loc", "uint32", REMOTE),
        Attr("tensor_device", "uint32", device), Attr("tensor_channel", "uint32", channel)])
        for i, (channel, ns) in enumerate(zip(work.channels.tolist(), work.ns.tolist(),
                                              strict=True))]


def _p2p(graph: _Graph, name: str, kind: str, src: int, dst: int, tag: int, nbytes: int,
         deps: list[int]) -> int:
    return graph.add(name, kind, deps, attrs=[
        Attr("comm_src", "uint32", src), Attr("comm_dst", "uint32", dst),
        Attr("comm_tag", "uint32", tag), Attr("comm_size", "int64", nbytes)])


def plan_graphs(plan: IterationPlan, fabric: InstanceFabric, receivers: bool = False,
                stage_links: bool = True) -> dict[int, list[Node]]:
    """The graph of every NPU of the plan's stage (with the P/D receivers if asked; without
    the receive from the previous stage and the send to the next one if not: a stage priced
    alone starts when its input has arrived)."""
    tp, stage = plan.tp, plan.stage
    dims = len(fabric.engine_dims())
    involved = [True] + [False] * (dims - 1)
    group = stage_group(stage) if tp > 1 else ""
    graphs: dict[int, list[Node]] = {}
    inbox: dict[int, list[tuple[str, int, int]]] = {}
    for rank in range(tp):
        npu = stage * tp + rank
        peer = rank + tp  # P/D receiver of this rank
        graph = _Graph()
        deps = [_memory(graph, op, plan.node, group, []) for op in plan.loads]
        if plan.receive is not None and stage_links:
            deps = [_p2p(graph, "stage_recv", "COMM_RECV_NODE", npu - tp, npu, stage,
                         plan.receive.nbytes, [])]
        received: list[tuple[str, int, int]] = []
        weights: list[int] = []
        launched: dict[int, list[int]] = {}  # per sub-batch: its last PIM group's nodes
        joins: list[int] = []  # PIM nodes the next chain node waits for
        for group_ in plan.groups:
            for layer in range(group_.first, group_.first + group_.count):
                prefix = "" if group_.first < 0 else f"layer{layer}."
                for op in group_.ops:
                    name = prefix + op.name
                    if op.kind == PIM:
                        launched[op.sub] = _pim(graph, name, op, plan.node, deps)
                        continue
                    if op.kind == PIM_WAIT:
                        joins.extend(launched.pop(op.sub, []))
                        continue
                    if joins and op.kind in (COMPUTE, COLLECTIVE):
                        deps, joins = [*deps, *joins], []
                    if op.kind in WEIGHT_LOADS:  # awaited by the next compute node
                        weights.append(_memory(graph, replace(op, name=name), plan.node, group,
                                               [] if op.kind == PREFETCH else deps))
                    elif op.kind == COMPUTE:
                        deps = [graph.add(name, "COMP_NODE", deps + weights, duration=op.ns)]
                        weights = []
                    elif op.kind == COLLECTIVE:
                        deps = [graph.add(name, "COMM_COLL_NODE", deps, attrs=[
                            Attr("comm_type", "int64", COLLECTIVE_CODES[op.target]),
                            Attr("comm_size", "int64", op.nbytes),
                            Attr("involved_dim", "bool", involved, is_list=True)])]
                    elif op.kind == SEND:
                        tag = len(received) + 1
                        _p2p(graph, name, "COMM_SEND_NODE", npu, peer, tag, op.nbytes, deps)
                        received.append((name, tag, op.nbytes))
        if plan.store is not None:
            _memory(graph, plan.store, plan.node, group, deps)
        if plan.handoff is not None:
            tag = len(received) + 1
            _p2p(graph, plan.handoff.name, "COMM_SEND_NODE", npu, peer, tag,
                 plan.handoff.nbytes, deps)
            received.append((plan.handoff.name, tag, plan.handoff.nbytes))
        if plan.forward is not None and stage_links:
            _p2p(graph, "stage_send", "COMM_SEND_NODE", npu, npu + tp, stage + 1,
                 plan.forward.nbytes, deps)
        graphs[npu] = graph.nodes
        inbox[peer] = received
    if receivers and (plan.handoff is not None or any(inbox.values())):
        for peer, messages in inbox.items():
            graph = _Graph()
            for name, tag, nbytes in messages:
                _p2p(graph, name, "COMM_RECV_NODE", peer - tp, peer, tag, nbytes, [])
            graphs[peer] = graph.nodes
    return graphs


def engine_setup(fabric: InstanceFabric, num_nodes: int, stages: int,
                 calendar: dict | None = None) -> tuple[EngineConfig, MemorySystem]:
    """Engine settings of one instance: its network, the joint-access groups of its stages, the
    CPU memory of the cluster's nodes, the CXL pool and the NPUs' own memory (FIFO state shared
    through `calendar`)."""
    tp = fabric.spec.tp
    groups = {stage_group(s): tuple(range(s * tp, s * tp + tp)) for s in range(stages)} \
        if tp > 1 else {}
    config = replace(fabric.engine_config(), comm_groups=groups)
    tiers = {REMOTE: host_tier(fabric.host, num_nodes, fabric.pim_channels)}
    if fabric.local_offloading:
        tiers[LOCAL] = local_tier(fabric.spec.npu_mem)
    if fabric.cxl is not None:
        tiers[CXL] = cxl_tier(fabric.cxl)
    memory = MemorySystem(tiers=tiers)
    if calendar is not None:
        memory.calendar = calendar
    return config, memory


class ChakraExporter:
    """Writes every scheduled batch's graphs and configuration files under one directory."""

    def __init__(self, num_nodes: int, directory: Path, dialect: str) -> None:
        self.directory = directory
        self.dialect = dialect
        self.num_nodes = num_nodes
        self.existed = directory.exists()
        self.written: list[Path] = []

    def discard(self) -> None:
        """Remove what this run exported (a failed or interrupted run leaves no partial
        export), and the directory if the run created it."""
        for target in self.written:
            shutil.rmtree(target, ignore_errors=True)
        if not self.existed:
            shutil.rmtree(self.directory, ignore_errors=True)

    def write(self, inst: Instance, batch: Batch) -> Path:
        """Export one batch (all its stages and P/D receivers); returns its workload prefix."""
        plans = inst.plans.plans(batch)
        graphs: dict[int, list[Node]] = {}
        for plan in plans:
            graphs.update(plan_graphs(plan, inst.fabric, receivers=True))
        config, memory = engine_setup(inst.fabric, self.num_nodes, len(plans))
        target = self.directory / f"instance{inst.index}_batch{batch.batch_id}"
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            target.mkdir()  # only into a folder of its own: nothing of the user's is written
        except FileExistsError:
            raise InputError(f"{target.name} appeared in the export folder during the run",
                             f"--export-chakra {self.directory}",
                             "export into a folder nothing else writes to") from None
        self.written.append(target)
        return export(target, graphs, config, memory, self.dialect)
