"""Congestion-aware Ring: messages cross the links hop by hop and queue on shared links."""

from __future__ import annotations

import pytest

from astra_sim import Dimension, SystemConfig, collective_ns
from astra_sim.chakra_et import COLLECTIVE_TYPES, Attr, Node
from astra_sim.engine import Engine, EngineConfig
from astra_sim.links import LinkSim, route

# 4-NPU ring with B = 1 byte/ns (bandwidth 1e9 / 2^30 "GB/s", §0.3) and L = 100 ns.
# A 1000-byte message keeps a link busy T = floor(1000 / 1) = 1000 ns and reaches the next
# device H = floor(100 + 1000) = 1100 ns after it started on the link.
UNIT_BW = 1e9 / (1 << 30)
RING4 = Dimension("Ring", 4, UNIT_BW, 100)
EP = 10


def deliveries(sim: LinkSim) -> dict:
    out = {}
    while (delivery := sim.next_delivery()) is not None:
        out[delivery[1]] = delivery[0]
    return out


def test_ring_routes_take_the_shorter_way_and_ties_go_clockwise():
    assert route(RING4, 0, 1) == (("ring", 0, 1),)
    assert route(RING4, 0, 3) == (("ring", 0, 3),)
    assert route(RING4, 0, 2) == (("ring", 0, 1), ("ring", 1, 2))
    assert route(RING4, 3, 1) == (("ring", 3, 0), ("ring", 0, 1))


def test_second_message_waits_for_the_first_ones_serialisation():
    # A: 0 -> 2 crosses 0->1 in [0, 1000) and reaches NPU 1 at 1100. B: 1 -> 2 took link
    # 1->2 at 1050, busy until 2050, delivered 1050 + 1100 = 2150. A waits at NPU 1 from
    # 1100 to 2050, then crosses: 2050 + 1100 = 3150.
    sim = LinkSim(RING4, {})
    sim.send(0, 0, 2, 1000, "A")
    sim.send(1050, 1, 2, 1000, "B")
    assert deliveries(sim) == {"A": 3150, "B": 2150}


def test_a_link_serves_messages_in_the_order_they_reach_it():
    # B is injected first but reaches link 1->2 at 1150, after A (at NPU 1 since 1100):
    # A uses 1->2 in [1100, 2100) -> 2200; B waits until 2100 -> 3200.
    sim = LinkSim(RING4, {})
    sim.send(1150, 1, 2, 1000, "B")
    sim.send(0, 0, 2, 1000, "A")
    assert deliveries(sim) == {"A": 2200, "B": 3200}


def test_links_stay_busy_for_later_traffic():
    # Link 1->2 was left busy until 5000 by earlier traffic: B starts at 5000, ends 6100.
    sim = LinkSim(RING4, {("ring", 1, 2): 5000})
    sim.send(0, 1, 2, 1000, "B")
    assert deliveries(sim) == {"B": 6100}


def collective(nid: int, kind: str, size: int, deps=()) -> Node:
    return Node(nid, f"coll{nid}", "COMM_COLL_NODE", data_deps=list(deps),
                attrs=[Attr("comm_type", "int64", COLLECTIVE_TYPES[kind.upper()]),
                       Attr("comm_size", "int64", size),
                       Attr("involved_dim", "bool", [True], is_list=True)])


def system(name: str) -> SystemConfig:
    a2a = "ring" if name == "halvingDoubling" else name
    return SystemConfig(endpoint_delay=EP, local_mem_bw=100, all_reduce=(name,),
                        all_gather=(name,), reduce_scatter=(name,), all_to_all=(a2a,))


DIRECT = system("direct")


def replay(graphs, dims=(RING4,), sys=DIRECT, aware=True) -> dict[int, int]:
    engine = Engine(EngineConfig(dims=dims, system=sys, aware=aware))
    return engine.replay(graphs, fast=False).finish_ns


def test_direct_all_to_all_queues_on_the_first_link():
    # comm_size 4000 -> 1000 B per peer. NPU i sends +1 and +2 (2 away, a tie: clockwise)
    # on link i->i+1 and -1 on link i->i-1, all at t = 0. The +2 message waits for the +1
    # message's serialisation: [1000, 2000) on i->i+1, reaches i+1 at 2100, crosses
    # i+1->i+2 (free since 2000) by 3200. A2A = 3200 + ep (arrival) + ep (end) = 3220.
    graphs = {n: [collective(1, "all_to_all", 4000)] for n in range(4)}
    assert replay(graphs) == dict.fromkeys(range(4), 3220)
    assert collective_ns("all_to_all", 4000, (RING4,), DIRECT, aware=True) == 3220
    # Unaware: ep + floor(2 × 100 + 1000) + ep = 1220, whatever the backend replays.
    assert replay(graphs, aware=False) == dict.fromkeys(range(4), 1220)


def test_a_late_npu_makes_a_forwarded_message_queue_behind_its_own():
    # NPUs 1-3 issue at 0, NPU 0 at 1500 (after a 1500 ns compute). From t = 0 each of
    # NPUs 1-3 sends +1 [0, 1000) and +2 [1000, 2000) on i->i+1 and -1 [0, 1000) on i->i-1.
    # NPU 0 at 1500 puts +1 on 0->1 in [1500, 2500) (-> NPU 1 at 2600), queues +2 behind it
    # in [2500, 3500), and sends -1 on 0->3 in [1500, 2500) (-> NPU 3 at 2600).
    # Forwarded +2 messages reach i+1 at 2100: 1's and 2's cross 2->3 and 3->0 at once
    # (-> 3200), but 3's finds 0->1 taken by NPU 0's two messages, queued first, and waits
    # until 3500 (-> NPU 1 at 4600); NPU 0's +2 reaches NPU 1 at 3600, crosses 1->2 by 4700.
    # Finish = last arrival + 2 ep: NPU 0 3220, NPU 1 4620, NPU 2 4720, NPU 3 3220.
    graphs = {n: [collective(1, "all_to_all", 4000)] for n in range(1, 4)}
    graphs[0] = [Node(1, "wait", "COMP_NODE", duration_micros=1500),
                 collective(2, "all_to_all", 4000, deps=[1])]
    assert replay(graphs) == {0: 3220, 1: 4620, 2: 4720, 3: 3220}


def test_halving_doubling_sends_the_largest_message_to_the_nearest_partner():
    # HalvingDoubling.cc: reduce-scatter of 8000 B sends 4000 B to the partner 1 away
    # (floor(100 + 4000) = 4100), then 2000 B to the partner 2 away, stored and forwarded
    # at NPU in between: 2 × floor(100 + 2000) = 4200. The two 2-hop messages sharing a
    # link (0->2 and 1->3 on 1->2) never meet: 1->3 leaves it at 2000, 0->2 arrives at 2100.
    # RS = (4100 + ep) + (4200 + ep) + ep + red(2000) 60 = 8390.
    graphs = {n: [collective(1, "reduce_scatter", 8000)] for n in range(4)}
    assert replay(graphs, sys=system("halvingDoubling")) == dict.fromkeys(range(4), 8390)
    # Unaware the second step costs floor(2 × 100 + 2000) = 2200 instead: 6390.
    assert replay(graphs, sys=system("halvingDoubling"), aware=False) == \
        dict.fromkeys(range(4), 6390)


@pytest.mark.parametrize("topology", ["Ring", "FullyConnected", "Switch"])
@pytest.mark.parametrize("name", ["ring", "direct", "halvingDoubling"])
@pytest.mark.parametrize("kind", ["all_reduce", "all_gather", "reduce_scatter", "all_to_all"])
def test_lockstep_replay_equals_the_aware_closed_form(topology, name, kind):
    # The hop-by-hop replay and the step-by-step closed form agree when all NPUs start
    # together (on the golden parameters of engine.md §6.3, 8 NPUs, 1 MiB).
    if name == "halvingDoubling" and kind == "all_to_all":
        return
    dims = (Dimension(topology, 8, 50, 500),)
    sys = SystemConfig(local_mem_bw=1600, all_reduce=(name,), all_gather=(name,),
                       reduce_scatter=(name,), all_to_all=(name,))
    expected = collective_ns(kind, 1 << 20, dims, sys, aware=True)
    graphs = {n: [collective(1, kind, 1 << 20)] for n in range(8)}
    assert replay(graphs, dims=dims, sys=sys) == dict.fromkeys(range(8), expected)


def test_aware_ring_is_slower_than_unaware_for_direct_and_halving_doubling():
    # The 8-NPU, 1 MiB case: Direct pays queueing on the first links, HD pays
    # every hop in full; Ring-algorithm neighbour traffic is unchanged (§6.4 "=").
    dims = (Dimension("Ring", 8, 50, 500),)
    for name, low, high in (("direct", 5.0, 6.0), ("halvingDoubling", 1.5, 1.7),
                            ("ring", 1.0, 1.0)):
        sys = SystemConfig(local_mem_bw=1600, all_reduce=(name,))
        ratio = collective_ns("all_reduce", 1 << 20, dims, sys, aware=True) / \
            collective_ns("all_reduce", 1 << 20, dims, sys)
        assert low <= ratio <= high, (name, ratio)
