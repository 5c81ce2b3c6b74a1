"""Engine benchmark: replay an 80-layer iteration graph on 8 NPUs (compute + 160 all-reduces).

Prints the fast-path (lockstep, closed form) and full event-driven replay times.
Usage: `python evaluation/benchmark_engine.py [--repeat N]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from astra_sim import Dimension, SystemConfig
from astra_sim.chakra_et import COLLECTIVE_TYPES, Attr, Node
from astra_sim.engine import Engine, EngineConfig

LAYER_OPS = ("input_layernorm", "q_proj", "k_proj", "v_proj", "rope", "attn", "o_proj",
             "ALLREDUCE", "post_layernorm", "gate_proj", "up_proj", "act_fn", "down_proj",
             "ALLREDUCE")


def iteration_graph(layers: int = 80, tokens: int = 2048, hidden: int = 8192) -> list[Node]:
    """A Llama-70B-shaped TP iteration: one chain of compute nodes and all-reduces."""
    nodes: list[Node] = []
    for layer in range(layers):
        for k, op in enumerate(LAYER_OPS):
            nid = len(nodes) + 1
            deps = [nid - 1] if nid > 1 else []
            if op == "ALLREDUCE":
                nodes.append(Node(nid, f"layer{layer}.allreduce{k}", "COMM_COLL_NODE", deps,
                                  attrs=[Attr("comm_type", "int64", COLLECTIVE_TYPES["ALL_REDUCE"]),
                                         Attr("comm_size", "int64", tokens * hidden * 2),
                                         Attr("involved_dim", "bool", [True], is_list=True)]))
            else:
                nodes.append(Node(nid, f"layer{layer}.{op}", "COMP_NODE", deps,
                                  duration_micros=20_000 + 1_000 * k))
    return nodes


def main() -> int:
    """Time both paths and print a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    config = EngineConfig(dims=(Dimension("FullyConnected", 8, 450, 0),),
                          system=SystemConfig(local_mem_bw=3350))
    graph = iteration_graph()
    rows = []
    for label, fast in (("fast path (lockstep closed form)", True),
                        ("full event-driven replay", False)):
        times, finish = [], None
        for _ in range(args.repeat if fast else max(1, args.repeat // 5)):
            graphs = {npu: graph for npu in range(8)}
            start = time.perf_counter()
            finish = Engine(config).replay(graphs, fast=fast).finish_ns[0]
            times.append(time.perf_counter() - start)
        rows.append((label, statistics.median(times) * 1e3, finish))
    title = f"80 layers x 8 NPUs, {len(graph):,} nodes per NPU"
    print(f"{title:<40} {'median ms':>10} {'finish ns':>14}")
    for label, ms, finish in rows:
        print(f"{label:<40} {ms:10.2f} {finish:14d}")
    return 0 if rows[0][2] == rows[1][2] else 1


if __name__ == "__main__":
    sys.exit(main())
