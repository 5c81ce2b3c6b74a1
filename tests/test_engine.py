"""Replay engine: issue rules, non-barrier collectives, memory FIFOs, fast path == full replay."""

from __future__ import annotations

import random

import pytest

from astra_sim import Dimension, SystemConfig, collective_ns
from astra_sim.chakra_et import Attr, Node
from astra_sim.engine import Engine, EngineConfig, GraphError
from astra_sim.memory import MemorySystem

MIB = 1 << 20
FC8 = (Dimension("FullyConnected", 8, 50, 500),)
SYSTEM = SystemConfig(endpoint_delay=10, local_mem_bw=1600)


def comp(nid: int, ns: int, deps=(), cpu: bool = False) -> Node:
    attrs = [Attr("is_cpu_op", "bool", True)] if cpu else []
    return Node(nid, f"comp{nid}", "COMP_NODE", data_deps=list(deps), duration_micros=ns,
                attrs=attrs)


def allreduce(nid: int, size: int, deps=(), kind: int = 0) -> Node:
    return Node(nid, f"coll{nid}", "COMM_COLL_NODE", data_deps=list(deps),
                attrs=[Attr("comm_type", "int64", kind), Attr("comm_size", "int64", size),
                       Attr("involved_dim", "bool", [True], is_list=True)])


def replay(graphs, dims=FC8, system=SYSTEM, memory=None, fast=True, aware=False):
    engine = Engine(EngineConfig(dims=dims, system=system, aware=aware), memory)
    return engine.replay(graphs, fast=fast)


def test_lone_ring_allreduce_is_the_golden_value():
    result = replay({n: [allreduce(1, MIB)] for n in range(8)}, fast=False)
    assert set(result.finish_ns.values()) == {43025}


def test_independent_compute_overlaps_with_the_collective():
    result = replay({n: [allreduce(1, MIB), comp(2, 5000)] for n in range(8)}, fast=False)
    assert result.finish_ns[0] == 43025
    assert result.exposed_comm_ns[0] == 38025


def test_two_independent_collectives_serialise():
    result = replay({n: [allreduce(1, MIB), allreduce(2, MIB)] for n in range(8)}, fast=False)
    assert set(result.finish_ns.values()) == {86050}


def test_two_independent_computes_serialise_but_cpu_ops_run_beside_them():
    result = replay({0: [comp(1, 100), comp(2, 100)]}, dims=(Dimension("Ring", 1, 1, 0),))
    assert result.finish_ns[0] == 200
    result = replay({0: [comp(1, 100), comp(2, 100, cpu=True)]},
                    dims=(Dimension("Ring", 1, 1, 0),))
    assert result.finish_ns[0] == 100


def test_a_late_rank_delays_the_ring_unevenly():
    graphs = {n: [allreduce(1, MIB)] for n in range(1, 8)}
    graphs[0] = [comp(1, 20_000), allreduce(2, MIB, deps=[1])]
    finish = replay(graphs, fast=False).finish_ns
    assert min(finish.values()) >= 43025 and max(finish.values()) <= 63025
    assert len(set(finish.values())) > 1 and max(finish.values()) == 63025


def test_a_late_rank_delays_direct_all_reduce_for_everyone():
    direct = SystemConfig(local_mem_bw=1600, all_reduce=("direct",))
    graphs = {n: [allreduce(1, MIB)] for n in range(1, 8)}
    graphs[0] = [comp(1, 20_000), allreduce(2, MIB, deps=[1])]
    finish = replay(graphs, system=direct, fast=False).finish_ns
    assert set(finish.values()) == {20_000 + collective_ns("all_reduce", MIB, FC8, direct)}


def send(nid, src, dst, size, deps=()):
    return Node(nid, f"send{nid}", "COMM_SEND_NODE", data_deps=list(deps),
                attrs=[Attr("comm_src", "uint32", src), Attr("comm_dst", "uint32", dst),
                       Attr("comm_tag", "uint32", 3), Attr("comm_size", "int64", size)])


def recv(nid, src, dst, size, deps=()):
    return Node(nid, f"recv{nid}", "COMM_RECV_NODE", data_deps=list(deps),
                attrs=[Attr("comm_src", "uint32", src), Attr("comm_dst", "uint32", dst),
                       Attr("comm_tag", "uint32", 3), Attr("comm_size", "int64", size)])


@pytest.mark.parametrize("topology,aware,expected", [("FullyConnected", False, 20031),
                                                     ("Switch", True, 40062)])
def test_point_to_point_sender_and_receiver(topology, aware, expected):
    dims = (Dimension(topology, 2, 50, 500),)
    result = replay({0: [send(1, 0, 1, MIB)], 1: [recv(1, 0, 1, MIB)]}, dims=dims, aware=aware)
    assert result.finish_ns == {0: expected, 1: expected}
    # A receive posted after the message arrived completes when it is posted.
    late = replay({0: [send(1, 0, 1, MIB)], 1: [comp(1, 50_000), recv(2, 0, 1, MIB, [1])]},
                  dims=dims, aware=aware)
    assert late.finish_ns[1] == 50_000


def mem(nid, size, deps=(), kind="MEM_LOAD_NODE"):
    return Node(nid, f"mem{nid}", kind, data_deps=list(deps),
                attrs=[Attr("tensor_size", "uint64", size)])


@pytest.mark.parametrize("memory,expected", [
    ({"memory-type": "PER_NPU_MEMORY_EXPANSION", "remote-mem-latency": 100,
      "remote-mem-bw": 100}, [10585] * 8),
    ({"memory-type": "PER_NODE_MEMORY_EXPANSION", "remote-mem-latency": 100,
      "remote-mem-bw": 100, "num-nodes": 2, "num-npus-per-node": 4},
     [10585, 21170, 31755, 42340] * 2),
    ({"memory-type": "MEMORY_POOL", "remote-mem-latency": 100, "remote-mem-bw": 100},
     [10585 * k for k in range(1, 9)]),
])
def test_remote_memory_queueing(memory, expected):
    system = MemorySystem.from_json_dict(memory, 8)
    result = replay({n: [mem(1, MIB)] for n in range(8)}, memory=system)
    assert [result.finish_ns[n] for n in range(8)] == expected


def test_memory_nodes_need_a_configured_memory():
    with pytest.raises(GraphError):
        replay({0: [mem(1, MIB)]}, dims=(Dimension("Ring", 1, 1, 0),))


def test_roofline_compute():
    node = Node(1, "gemm", "COMP_NODE", duration_micros=5,
                attrs=[Attr("num_ops", "int64", 10**12), Attr("tensor_size", "uint64", 10**9)])
    cfg = EngineConfig(dims=(Dimension("Ring", 1, 1, 0),), roofline=True, peak_tflops=900,
                       system=SystemConfig(local_mem_bw=1600))
    assert Engine(cfg).replay({0: [node]}).finish_ns[0] == 1_111_111
    node.attrs[1].value = 10**10
    assert Engine(cfg).replay({0: [node]}).finish_ns[0] == 6_250_000


def test_upstream_durations_are_microseconds_and_zero_becomes_one_ns():
    cfg = EngineConfig(dims=(Dimension("Ring", 1, 1, 0),), duration_unit_ns=1000)
    assert Engine(cfg).replay({0: [comp(1, 0), comp(2, 2, [1])]}).finish_ns[0] == 2001


def test_cycles_and_dangling_dependencies_are_errors():
    with pytest.raises(GraphError, match="cycle"):
        replay({0: [comp(1, 5, [2]), comp(2, 5, [1])]}, dims=(Dimension("Ring", 1, 1, 0),))
    with pytest.raises(GraphError, match="missing"):
        replay({0: [comp(1, 5, [9])]}, dims=(Dimension("Ring", 1, 1, 0),))


def random_graph(rng: random.Random, size: int) -> list[Node]:
    nodes = []
    for nid in range(1, size + 1):
        deps = sorted(rng.sample(range(1, nid), k=min(nid - 1, rng.randint(0, 2))))
        if rng.random() < 0.25:
            nodes.append(allreduce(nid, rng.choice((MIB, 4 * MIB, 12345)), deps,
                                   kind=rng.choice((0, 2, 6, 7))))
        else:
            nodes.append(comp(nid, rng.randint(0, 40_000), deps, cpu=rng.random() < 0.1))
    return nodes


@pytest.mark.parametrize("seed", range(8))
def test_fast_path_equals_full_replay_on_random_graphs(seed):
    rng = random.Random(seed)
    dims = (Dimension(rng.choice(("Ring", "FullyConnected", "Switch")), 4, 50, 500),)
    graph = random_graph(rng, rng.randint(5, 40))
    graphs = {n: graph for n in range(4)}
    fast = replay(graphs, dims=dims)
    full = replay({n: [Node(x.id, x.name, x.type, list(x.data_deps), [], x.duration_micros, 0,
                            list(x.attrs)) for x in graph] for n in range(4)},
                  dims=dims, fast=False)
    assert fast.finish_ns == full.finish_ns
    assert fast.exposed_comm_ns == full.exposed_comm_ns


def test_double_binary_tree_all_reduce_hand_derived():
    # p = 4, 1 MiB: each tree carries 512 KiB: net = floor(500 + 524288 / 53.687) = 10,265,
    # message = net + ep = 10,275, reduction = 3 * floor(524288 / 1600) = 981.
    # Tree A (root 0; 1 and 2 under 0; 3 under 1): node 1 sums at 10,275 + 981 = 11,256;
    # root: child 1 arrives 21,531 (+981), child 2 at 10,275 (+981) -> 23,493; broadcast:
    # 1 and 2 at 33,768, 3 at 44,043. Tree B is rotated by one (root 1, leaf 0): 0 gets its
    # half at 44,043, 2 and 3 at 33,768. Finish = latest half + ep.
    dbt = SystemConfig(local_mem_bw=1600, all_reduce=("doubleBinaryTree",))
    dims = (Dimension("FullyConnected", 4, 50, 500),)
    result = replay({n: [allreduce(1, MIB)] for n in range(4)}, dims=dims, system=dbt)
    assert result.finish_ns == {0: 44053, 1: 33778, 2: 33778, 3: 44053}
