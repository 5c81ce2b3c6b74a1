"""The per-NPU Chakra graph of one iteration, and its export (`--export-chakra DIR`).

The graph holds exactly the operators the closed form prices: input (and swap) loads from host
memory, the compute chain with its TP collectives, stage-to-stage sends and receives under
pipeline parallelism, and the output store. Each batch is written
to `DIR/instance<i>_batch<b>/` with its own network.yml, system.json and memory.json, so
`python -m astra_sim --workload DIR/instance<i>_batch<b>/llm ...` replays that iteration alone.
"""

from __future__ import annotations

from pathlib import Path

from astra_sim import Dimension, SystemConfig
from astra_sim.chakra_et import COLLECTIVE_TYPES, Attr, Node
from astra_sim.engine import EngineConfig
from astra_sim.export import export
from astra_sim.memory import REMOTE, MemorySystem, Tier
from inference_serving.cluster_config import ClusterConfig, InstanceSpec
from inference_serving.instance import Instance
from inference_serving.iteration import IterationTimer
from inference_serving.scheduler.base import Batch
from llmsim_core.op_templates import ALLREDUCE, ALLTOALL, ATTENTION, EXPERTS


def _memory_node(nid: int, name: str, kind: str, nbytes: int, deps: list[int]) -> Node:
    return Node(nid, name, kind, data_deps=deps,
                attrs=[Attr("tensor_size", "uint64", nbytes), Attr("tensor_loc", "uint32", REMOTE),
                       Attr("tensor_device", "uint32", 0)])


def _compute_chain(timer: IterationTimer, batch: Batch, nodes: list[Node], deps: list[int],
                   sequence: list[tuple[str, int]], involved: list[bool]) -> list[int]:
    """Append the compute/collective chain for (operator, layer) pairs; return the last id."""
    tokens, requests = batch.total_tokens, len(batch.requests)
    attention = timer.perf.attention_ns(timer.attention_batch(batch))
    experts = timer.experts_ns(tokens) // timer.model.num_layers
    previous = deps
    for op, layer in sequence:
        nid = len(nodes) + 1
        name = op if layer < 0 else f"layer{layer}.{op}"
        if op in (ALLREDUCE, ALLTOALL):
            kind = "ALL_REDUCE" if op == ALLREDUCE else "ALL_TO_ALL"
            nodes.append(Node(nid, name, "COMM_COLL_NODE", data_deps=previous, attrs=[
                Attr("comm_type", "int64", COLLECTIVE_TYPES[kind]),
                Attr("comm_size", "int64", timer.collective_bytes(tokens)),
                Attr("involved_dim", "bool", involved, is_list=True)]))
        else:
            # Expert rows: every rank is charged the slowest rank's time, as the closed form
            # does (the next collective synchronises the ranks).
            duration = attention if op == ATTENTION else experts if op == EXPERTS else \
                timer.op_ns(op, tokens, requests)
            nodes.append(Node(nid, name, "COMP_NODE", data_deps=previous,
                              duration_micros=duration))
        previous = [nid]
    return previous


def _input_loads(timer: IterationTimer, batch: Batch, nodes: list[Node]) -> list[int]:
    loads = [("input_load", "MEM_LOAD_NODE", timer.input_bytes(batch.total_tokens)),
             ("kv_load", "MEM_LOAD_NODE", batch.swap_in_bytes),
             ("kv_evict", "MEM_STORE_NODE", batch.swap_out_bytes)]
    for name, kind, nbytes in loads:
        if nbytes or name == "input_load":
            nodes.append(_memory_node(len(nodes) + 1, name, kind, nbytes, []))
    return [n.id for n in nodes]


def _p2p(nid: int, kind: str, src: int, dst: int, tag: int, nbytes: int,
         deps: list[int]) -> Node:
    name = "stage_send" if kind == "COMM_SEND_NODE" else "stage_recv"
    return Node(nid, name, kind, data_deps=deps, attrs=[
        Attr("comm_src", "uint32", src), Attr("comm_dst", "uint32", dst),
        Attr("comm_tag", "uint32", tag), Attr("comm_size", "int64", nbytes)])


def iteration_graph(timer: IterationTimer, batch: Batch) -> list[Node]:
    """One TP rank's graph for `batch` without pipelining (every rank runs the same graph)."""
    nodes: list[Node] = []
    deps = _input_loads(timer, batch, nodes)
    template = timer.template
    sequence = [(op, -1) for op in template.pre_ops]
    sequence += [(op, layer) for layer in range(timer.model.num_layers)
                 for op in template.block_ops]
    sequence += [(op, -1) for op in template.post_ops]
    last = _compute_chain(timer, batch, nodes, deps, sequence, [True])
    nodes.append(_memory_node(len(nodes) + 1, "output_store", "MEM_STORE_NODE",
                              timer.store_bytes(batch), last))
    return nodes


def stage_graphs(timer: IterationTimer, batch: Batch, tp: int) -> dict[int, list[Node]]:
    """Graphs of every NPU of the instance (local ids stage · tp + rank). Stage s holds its
    blocks; stage 0 starts with the input load, later stages with a receive of the previous
    stage's activations; non-final stages end with a send, the last with the output store."""
    stages = len(timer.stage_layers)
    if stages == 1:
        graph = iteration_graph(timer, batch)
        return {rank: graph for rank in range(tp)}
    template, activations = timer.template, timer.collective_bytes(batch.total_tokens)
    graphs: dict[int, list[Node]] = {}
    first_layer = 0
    for stage, count in enumerate(timer.stage_layers):
        sequence = [(op, -1) for op in template.pre_ops] if stage == 0 else []
        sequence += [(op, layer) for layer in range(first_layer, first_layer + count)
                     for op in template.block_ops]
        if stage == stages - 1:
            sequence += [(op, -1) for op in template.post_ops]
        for rank in range(tp):
            npu = stage * tp + rank
            nodes: list[Node] = []
            if stage == 0:
                deps = _input_loads(timer, batch, nodes)
            else:
                nodes.append(_p2p(1, "COMM_RECV_NODE", npu - tp, npu, stage, activations, []))
                deps = [1]
            last = _compute_chain(timer, batch, nodes, deps, sequence, [True, False])
            if stage < stages - 1:
                nodes.append(_p2p(len(nodes) + 1, "COMM_SEND_NODE", npu, npu + tp, stage + 1,
                                  activations, last))
            else:
                nodes.append(_memory_node(len(nodes) + 1, "output_store", "MEM_STORE_NODE",
                                          timer.store_bytes(batch), last))
            graphs[npu] = nodes
        first_layer += count
    return graphs


def instance_engine(cluster: ClusterConfig, spec: InstanceSpec,
                    aware: bool = False) -> tuple[EngineConfig, MemorySystem]:
    """Engine settings for one instance replayed alone: its TP group (and pipeline stages as a
    second dimension) and its node's host memory."""
    dims = (Dimension("FullyConnected", spec.tp, cluster.link_bw_gbps,
                      cluster.link_latency_ns),)
    if spec.pp > 1:
        dims += (Dimension("FullyConnected", spec.pp, cluster.link_bw_gbps,
                           cluster.link_latency_ns),)
    host = cluster.nodes[spec.node_id].cpu_mem
    memory = MemorySystem(tiers={REMOTE: Tier(int(host.latency_ns),
                                              int(host.bw_bytes_per_ns), 1)})
    config = EngineConfig(dims=dims, system=SystemConfig(local_mem_bw=spec.npu_mem.bw_bytes_per_ns),
                          aware=aware)
    return config, memory


class ChakraExporter:
    """Writes every scheduled batch's graphs and configuration files under one directory."""

    def __init__(self, cluster: ClusterConfig, directory: Path, dialect: str) -> None:
        self.cluster = cluster
        self.directory = directory
        self.dialect = dialect

    def write(self, inst: Instance, batch: Batch) -> Path:
        """Export one batch; returns its workload prefix."""
        graphs = stage_graphs(inst.timer, batch, inst.spec.tp)
        config, memory = instance_engine(self.cluster, inst.spec)
        target = self.directory / f"instance{inst.index}_batch{batch.batch_id}"
        return export(target, graphs, config, memory, self.dialect)
