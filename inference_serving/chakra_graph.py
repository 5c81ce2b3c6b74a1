"""The per-NPU Chakra graph of one iteration, and its export (`--export-chakra DIR`).

The graph holds exactly the operators the closed form prices: input (and swap) loads from host
memory, the compute chain with its TP all-reduces, and the output store. Each batch is written
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
from inference_serving.iteration import ALLREDUCE, ALLTOALL, ATTENTION, EXPERTS, IterationTimer
from inference_serving.scheduler.base import Batch


def _memory_node(nid: int, name: str, kind: str, nbytes: int, deps: list[int]) -> Node:
    return Node(nid, name, kind, data_deps=deps,
                attrs=[Attr("tensor_size", "uint64", nbytes), Attr("tensor_loc", "uint32", REMOTE),
                       Attr("tensor_device", "uint32", 0)])


def iteration_graph(timer: IterationTimer, batch: Batch) -> list[Node]:
    """One TP rank's graph for `batch` (every rank of a dense instance runs the same graph)."""
    tokens, requests = batch.total_tokens, len(batch.requests)
    nodes: list[Node] = []
    loads = [("input_load", "MEM_LOAD_NODE", timer.input_bytes(tokens)),
             ("kv_load", "MEM_LOAD_NODE", batch.swap_in_bytes),
             ("kv_evict", "MEM_STORE_NODE", batch.swap_out_bytes)]
    for name, kind, nbytes in loads:
        if nbytes or name == "input_load":
            nodes.append(_memory_node(len(nodes) + 1, name, kind, nbytes, []))
    previous = [n.id for n in nodes]
    attention = timer.perf.attention_ns(timer.attention_batch(batch))
    experts = timer.experts_ns(tokens) // timer.model.num_layers
    template = timer.template
    sequence = [(op, -1) for op in template.pre_ops]
    sequence += [(op, layer) for layer in range(timer.model.num_layers)
                 for op in template.block_ops]
    sequence += [(op, -1) for op in template.post_ops]
    for op, layer in sequence:
        nid = len(nodes) + 1
        name = op if layer < 0 else f"layer{layer}.{op}"
        if op in (ALLREDUCE, ALLTOALL):
            kind = "ALL_REDUCE" if op == ALLREDUCE else "ALL_TO_ALL"
            nodes.append(Node(nid, name, "COMM_COLL_NODE", data_deps=previous, attrs=[
                Attr("comm_type", "int64", COLLECTIVE_TYPES[kind]),
                Attr("comm_size", "int64", timer.collective_bytes(tokens)),
                Attr("involved_dim", "bool", [True], is_list=True)]))
        else:
            # Expert rows: every rank is charged the slowest rank's time, as the closed form
            # does (the next collective synchronises the ranks).
            duration = attention if op == ATTENTION else experts if op == EXPERTS else \
                timer.op_ns(op, tokens, requests)
            nodes.append(Node(nid, name, "COMP_NODE", data_deps=previous,
                              duration_micros=duration))
        previous = [nid]
    nodes.append(_memory_node(len(nodes) + 1, "output_store", "MEM_STORE_NODE",
                              timer.store_bytes(batch), previous))
    return nodes


def instance_engine(cluster: ClusterConfig, spec: InstanceSpec,
                    aware: bool = False) -> tuple[EngineConfig, MemorySystem]:
    """Engine settings for one instance replayed alone: its TP group and its node's memory."""
    dims = (Dimension("FullyConnected", spec.tp, cluster.link_bw_gbps,
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
        self.written = 0

    def write(self, inst: Instance, batch: Batch) -> Path:
        """Export one batch; returns its workload prefix."""
        graph = iteration_graph(inst.timer, batch)
        config, memory = instance_engine(self.cluster, inst.spec)
        target = self.directory / f"instance{inst.index}_batch{batch.batch_id}"
        self.written += 1
        return export(target, {rank: graph for rank in range(inst.spec.tp)}, config, memory,
                      self.dialect)
