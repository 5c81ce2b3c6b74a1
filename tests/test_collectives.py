"""Collective and point-to-point times: the golden values of engine.md §6 and hand-derived cases."""

from __future__ import annotations

import pytest

from astra_sim import Dimension, SystemConfig, collective_ns, send_ns
from astra_sim.collectives import _direct_pairs, _fifo_ns
from astra_sim.topology import coordinates, npu_id

MIB = 1 << 20
KINDS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all")
GOLDEN_SYSTEM = SystemConfig(endpoint_delay=10, local_mem_bw=1600)
# engine.md §6.4: (topology, p, MiB) -> AR, AG, RS, A2A unaware, then the same aware.
GOLDEN = {
    ("Ring", 4, 1): (33829, 60133, 17653, 32362) * 2,
    ("Ring", 4, 64): (1972435, 3751540, 1033405, 1878070) * 2,
    ("Ring", 8, 1): (43025, 140297, 22368, 82638) * 2,
    ("Ring", 8, 64): (2304732, 8753580, 1207412, 4389290) * 2,
    ("Ring", 16, 1): (53710, 300625, 27760, 207610) * 2,
    ("Ring", 16, 64): (2477005, 18757660, 1297480, 9436210) * 2,
    ("FullyConnected", 4, 1): (33829, 60133, 17653, 32362) * 2,
    ("FullyConnected", 4, 64): (1972435, 3751540, 1033405, 1878070) * 2,
    ("FullyConnected", 8, 1): (43025, 140297, 22368, 82638) * 2,
    ("FullyConnected", 8, 64): (2304732, 8753580, 1207412, 4389290) * 2,
    ("FullyConnected", 16, 1): (53710, 300625, 27760, 207610) * 2,
    ("FullyConnected", 16, 64): (2477005, 18757660, 1297480, 9436210) * 2,
    ("Switch", 4, 1): (36829, 61633, 19153, 35362, 66121, 120226, 33799, 64654),
    ("Switch", 4, 64): (1975435, 3753040, 1034905, 1881070, 3850435, 7503040, 1972405, 3756070),
    ("Switch", 8, 1): (50025, 143797, 25868, 96638, 84199, 280514, 42955, 164986),
    ("Switch", 8, 64): (2311732, 8757080, 1210912, 4403290, 4499232, 17507080, 2304662, 8778290),
    ("Switch", 16, 1): (68710, 308125, 35260, 267610, 105310, 601090, 53560, 414010),
    ("Switch", 16, 64): (2492005, 18765160, 1304980, 9496210, 4835755, 37515160, 2476855,
                         18871210),
}
GOLDEN_CASES = [(topo, p, mib, aware, kind, values[KINDS.index(kind) + 4 * aware])
                for (topo, p, mib), values in GOLDEN.items() for aware in (False, True)
                for kind in KINDS]


@pytest.mark.parametrize("topology,p,mib,aware,kind,expected", GOLDEN_CASES)
def test_golden_ring_collectives(topology, p, mib, aware, kind, expected):
    dims = (Dimension(topology, p, 50, 500),)
    assert collective_ns(kind, mib * MIB, dims, GOLDEN_SYSTEM, aware=aware) == expected


def test_golden_vector_count():
    assert len(GOLDEN_CASES) == 3 * 3 * 2 * 4 * 2


# 1 MiB at 50 GB/s: B = 53.6870912 B/ns, 1048576 / B = 19531.25 ns; 500 ns per hop.
@pytest.mark.parametrize("topology,src,dst,aware,expected", [
    ("FullyConnected", 0, 5, False, 20031),  # §6.5 golden: floor(500 + 19531.25)
    ("Switch", 0, 5, True, 40062),  # §6.5 golden: two links, 2 × floor(500 + 19531.25)
    ("Switch", 0, 5, False, 20531),  # floor(2 × 500 + 19531.25)
    ("Ring", 1, 6, False, 21031),  # 3 hops the short way: floor(3 × 500 + 19531.25)
    ("Ring", 1, 6, True, 60093),  # store-and-forward over 3 links: 3 × 20031
    ("Ring", 3, 3, False, 0),
])
def test_point_to_point(topology, src, dst, aware, expected):
    assert send_ns(MIB, [Dimension(topology, 8, 50, 500)], src, dst, aware=aware) == expected


def test_point_to_point_uses_the_lowest_differing_dimension():
    dims = (Dimension("FullyConnected", 4, 50, 500), Dimension("Switch", 2, 50, 500))
    assert send_ns(MIB, dims, 0, 5) == 20031  # (0,0) -> (1,1): dimension 0, FullyConnected
    assert send_ns(MIB, dims, 1, 5) == 20531  # (1,0) -> (1,1): dimension 1, Switch
    with pytest.raises(ValueError, match="outside"):
        send_ns(MIB, dims, 0, 8)
    with pytest.raises(ValueError, match="only 1-D"):
        send_ns(MIB, dims, 0, 5, aware=True)


# Hand-derived cases use B = 1 byte/ns exactly (1e9 / 2^30 "GB/s"), latency 100 ns,
# endpoint delay 10 ns and local-mem-bw 100 bytes/ns, so red(m) = 3 × floor(m / 100).
UNIT_BW = 1e9 / 2**30


def unit(topology: str, p: int) -> tuple[Dimension, ...]:
    return (Dimension(topology, p, UNIT_BW, 100),)


def algorithm(name: str) -> SystemConfig:
    a2a = "ring" if name == "halvingDoubling" else name
    return SystemConfig(local_mem_bw=100, all_reduce=(name,), all_gather=(name,),
                        reduce_scatter=(name,), all_to_all=(a2a,))


def test_unit_bandwidth_is_one_byte_per_ns():
    assert unit("Ring", 4)[0].bytes_per_ns == 1.0
    assert Dimension("Ring", 4, 50, 500).bytes_per_ns == 53.6870912


@pytest.mark.parametrize("name", ["direct", "direct4"])
def test_direct_on_fully_connected(name):
    dims, system = unit("FullyConnected", 4), algorithm(name)
    # C = 4000, p = 4: C/p = 1000, net = floor(100 + 1000) = 1100.
    assert collective_ns("all_to_all", 4000, dims, system) == 1120  # 10 + 1100 + 10
    assert collective_ns("reduce_scatter", 4000, dims, system) == 1150  # 1120 + red(1000) 30
    assert collective_ns("all_reduce", 4000, dims, system) == 2260  # 1150 + 1100 + 10
    # All-gather of a 1000-byte per-rank input sends all of it: 10 + 1100 + 10.
    assert collective_ns("all_gather", 1000, dims, system) == 1120


def test_direct_on_a_ring_pays_the_farthest_peer():
    dims, system = unit("Ring", 8), algorithm("direct")
    # C = 8000, p = 8: farthest peer 4 hops away, net = floor(4 × 100 + 1000) = 1400.
    assert collective_ns("all_to_all", 8000, dims, system) == 1420  # 10 + 1400 + 10
    assert collective_ns("reduce_scatter", 8000, dims, system) == 1450  # + red(1000) 30
    assert collective_ns("all_reduce", 8000, dims, system) == 2860  # 1450 + 1400 + 10
    assert collective_ns("all_gather", 1000, dims, system) == 1420
    # p = 5: the farthest peer is 2 hops away: 10 + floor(200 + 1000) + 10.
    assert collective_ns("all_to_all", 5000, unit("Ring", 5), system) == 1220


def test_halving_doubling_on_fully_connected():
    dims, system = unit("FullyConnected", 8), algorithm("halvingDoubling")
    # RS of C = 8000: messages 4000, 2000, 1000 -> net 4100, 2100, 1100 (+10 each) = 7330;
    # + 10 + red(2000) 60 + red(1000) 30 = 7430.
    assert collective_ns("reduce_scatter", 8000, dims, system) == 7430
    assert collective_ns("all_reduce", 8000, dims, system) == 14760  # 7430 + 7330
    # AG of a 1000-byte input: messages 1000, 2000, 4000 -> 1110 + 2110 + 4110 + 10.
    assert collective_ns("all_gather", 1000, dims, system) == 7340


def test_halving_doubling_on_a_ring_uses_partner_distance():
    dims, system = unit("Ring", 8), algorithm("halvingDoubling")
    # RS sends 4000, 2000, 1000 B to partners 1, 2, 4 hops away (HalvingDoubling.cc):
    # floor(100 + 4000) + floor(200 + 2000) + floor(400 + 1000) (+10 each) = 7730;
    # + 10 + 60 + 30 = 7830.
    assert collective_ns("reduce_scatter", 8000, dims, system) == 7830
    assert collective_ns("all_reduce", 8000, dims, system) == 15560  # 7830 + 7730
    # AG partners are 4, 2, 1 hops away with 1000, 2000, 4000 bytes: 7730 + 10.
    assert collective_ns("all_gather", 1000, dims, system) == 7740


def test_halving_doubling_rejects_non_powers_of_two_and_all_to_all():
    with pytest.raises(ValueError, match="power-of-two"):
        collective_ns("all_reduce", MIB, unit("FullyConnected", 6), algorithm("halvingDoubling"))
    with pytest.raises(ValueError, match="all-to-all"):
        collective_ns("all_to_all", MIB, unit("FullyConnected", 8),
                      SystemConfig(all_to_all=("halvingDoubling",)))


def test_double_binary_tree_has_no_closed_form():
    with pytest.raises(ValueError, match="no closed form"):
        collective_ns("all_reduce", MIB, unit("FullyConnected", 8),
                      SystemConfig(all_reduce=("doubleBinaryTree",)))


def test_aware_direct_on_fully_connected_equals_unaware():
    # One private link per ordered pair: nothing queues, floor(100 + 1000) per message.
    dims, system = unit("FullyConnected", 4), algorithm("direct")
    assert collective_ns("all_reduce", 4000, dims, system, aware=True) == 2260


def test_aware_direct_on_a_switch_serialises_the_uplink():
    dims, system = unit("Switch", 8), algorithm("direct")
    # §5.4: (p - 2) × floor(m/B) + 2 × floor(latency + m/B) + 2 ep, m = 1000:
    # 6 × 1000 + 2 × 1100 + 20 = 8220.
    assert collective_ns("all_to_all", 8000, dims, system, aware=True) == 8220
    # The golden parameters: m = 131072 B -> floor(m/B) = 2441, floor(500 + m/B) = 2941.
    golden = (Dimension("Switch", 8, 50, 500),)
    assert collective_ns("all_to_all", MIB, golden, algorithm("direct"), aware=True) == \
        6 * 2441 + 2 * 2941 + 20


@pytest.mark.parametrize("p,nbytes", [(2, 1000), (4, 1000), (8, 131072), (16, 65536)])
def test_link_fifo_simulation_reproduces_the_switch_rule(p, nbytes):
    # The simulation that times aware Ring steps must agree with the measured §5.4 rule.
    dim = Dimension("Switch", p, 50, 500)
    assert _fifo_ns(dim, nbytes, _direct_pairs(p)) == \
        (p - 2) * dim.busy_ns(nbytes) + 2 * dim.link_ns(nbytes)


def test_aware_direct_on_a_ring_queues_on_shared_links():
    system = algorithm("direct")
    # p = 4, m = 1000: per link T = floor(m/B) = 1000 busy, L = floor(100 + m/B) = 1100.
    # NPU i puts +1 then +2 (a tie, sent forward) on link i->i+1 at 0 and 1000; the +2
    # message reaches i+1 at 2100 and crosses i+1->i+2 (free since 2000) by 3200.
    # The -1 message has its own backward link: 1100. A2A = 10 + 3200 + 10.
    assert collective_ns("all_to_all", 4000, unit("Ring", 4), system, aware=True) == 3220
    # p = 8: link j->j+1 serves, first come first served: its own +1..+4 in [0, 4000];
    # from j-1 +2, +3, +4 (arrived 2100, 3100, 4100) in [4000, 7000]; from j-2 +3, +4
    # (left j-1 at 5000, 6000, arrived 6100, 7100) in [7000, 9000]; from j-3 +4 (left j-1
    # at 8000, arrived 9100) in [9100, 10100], delivered at 10200. A2A = 10 + 10200 + 10.
    assert collective_ns("all_to_all", 8000, unit("Ring", 8), system, aware=True) == 10220
    # AR = two such steps: 10220 + red(1000) 30 + 10200 + 10.
    assert collective_ns("all_reduce", 8000, unit("Ring", 8), system, aware=True) == 20460


def test_aware_halving_doubling_on_a_ring_pays_every_hop_in_full():
    dims, system = unit("Ring", 8), algorithm("halvingDoubling")
    # HalvingDoubling.cc sends the largest message to the nearest partner: 4000 B 1 hop,
    # 2000 B 2 hops, 1000 B 4 hops (p/2: clockwise). A step's messages reach each link one
    # hop time apart, longer than a message keeps it busy, so they never meet and a partner
    # d hops away costs d × floor(100 + m): 4100 + 2 × 2100 + 4 × 1100 (+10 each) = 12730;
    # RS = 12730 + 10 + red(2000) 60 + red(1000) 30 = 12830, AR = 12830 + 12730.
    assert collective_ns("reduce_scatter", 8000, dims, system, aware=True) == 12830
    assert collective_ns("all_reduce", 8000, dims, system, aware=True) == 25560
    # Two links through a switch per exchange: RS = 2 × (4100 + 2100 + 1100) + 30 + 10 + 90.
    assert collective_ns("reduce_scatter", 8000, unit("Switch", 8), system, aware=True) == 14730


# engine.md §5.1 example: FullyConnected 4 @ 200 GB/s, 100 ns × Switch 2 @ 25 GB/s, 1000 ns.
# B0 = 214.7483648 B/ns, B1 = 26.8435456 B/ns; golden system (ep 10, local-mem-bw 1600).
TWO_D = (Dimension("FullyConnected", 4, 200, 100), Dimension("Switch", 2, 25, 1000))


def two_d(optimization: str) -> SystemConfig:
    ring2 = ("ring", "ring")
    return SystemConfig(local_mem_bw=1600, collective_optimization=optimization,
                        all_reduce=ring2, all_gather=ring2, reduce_scatter=ring2,
                        all_to_all=ring2)


def test_two_dimensional_all_reduce_local_bw_aware():
    # C = 4 MiB.
    # RS on dim 0 (p 4), m = 1048576: net = floor(100 + 4882.8125) = 4982, red = 3 × 655;
    #   3 × 4992 + 3 × 1965 + 10 = 20881.
    # AR on dim 1 (p 2) on C/4, m = 524288: net = floor(2000 + 19531.25) = 21531,
    #   red = 3 × 327 = 981; 2 × 21541 + 981 + 10 = 44073.
    # AG on dim 0 of the per-rank 1048576: 3 × 4992 + 10 = 14986.
    assert collective_ns("all_reduce", 4 * MIB, TWO_D, two_d("localBWAware")) == \
        20881 + 44073 + 14986


def test_two_dimensional_all_reduce_baseline():
    # AR on dim 0 on C: 6 × 4992 + 3 × 1965 + 10 = 35857.
    # AR on dim 1 on C: m = 2097152, net = floor(2000 + 78125) = 80125, red = 3 × 1310;
    #   2 × 80135 + 3930 + 10 = 164210.
    assert collective_ns("all_reduce", 4 * MIB, TWO_D, two_d("baseline")) == 35857 + 164210


def test_two_dimensional_phase_order_of_other_collectives():
    system = two_d("localBWAware")
    # AG, descending dims: dim 1 on 4 MiB: floor(2000 + 156250) + 10 + 10 = 158270; then
    # dim 0 on 8 MiB: 3 × (floor(100 + 39062.5) + 10) + 10 = 117526.
    assert collective_ns("all_gather", 4 * MIB, TWO_D, system) == 158270 + 117526
    # RS, ascending dims: dim 0 on C = 20881; dim 1 on C/4: 21541 + 981 + 10 = 22532.
    assert collective_ns("reduce_scatter", 4 * MIB, TWO_D, system) == 20881 + 22532
    # A2A, full size on each dim: 6 × 4992 + 10 = 29962; 1 × (80125 + 10) + 10 = 80145.
    assert collective_ns("all_to_all", 4 * MIB, TWO_D, system) == 29962 + 80145


def test_involved_dims_and_short_implementation_lists_scope_the_collective():
    # Dim 0 alone, AR on C = 4 MiB: 35857 (see the baseline test).
    system = two_d("localBWAware")
    assert collective_ns("all_reduce", 4 * MIB, TWO_D, system, involved=[True, False]) == 35857
    # LLMServingSim writes one "ring" entry: only dimension 0 takes part.
    assert collective_ns("all_reduce", 4 * MIB, TWO_D, GOLDEN_SYSTEM) == 35857
    assert collective_ns("all_reduce", 4 * MIB, TWO_D, system, involved=[False, False]) == 0


def test_single_npu_dimensions_cost_nothing():
    single = (Dimension("FullyConnected", 1, 50, 0),)
    assert collective_ns("all_reduce", MIB, single, GOLDEN_SYSTEM) == 0
    # A 1-NPU dimension in front is skipped: same as the golden FullyConnected 8, 1 MiB.
    dims = (Dimension("Switch", 1, 50, 500), Dimension("FullyConnected", 8, 50, 500))
    assert collective_ns("all_reduce", MIB, dims, two_d("localBWAware")) == 43025


@pytest.mark.parametrize("splits,active,expected", [
    (1, 1, 43025), (4, 1, 4 * 16110), (4, 2, 2 * 16110), (4, 3, 2 * 16110), (4, 4, 16110)])
def test_splits_and_active_chunks(splits, active, expected):
    # One 256 KiB chunk on FullyConnected 8 @ 50 GB/s: m = 32768, net = floor(500 + 610.35)
    # = 1110, red = 3 × 20 = 60: 14 × 1120 + 7 × 60 + 10 = 16110; total ceil(s/a) × 16110.
    system = SystemConfig(local_mem_bw=1600, preferred_dataset_splits=splits,
                          active_chunks_per_dimension=active)
    dims = (Dimension("FullyConnected", 8, 50, 500),)
    assert collective_ns("all_reduce", MIB, dims, system) == expected


def test_tiny_collectives_round_up_to_one_byte_per_npu_of_the_system():
    system = algorithm("ring")
    fc8 = (Dimension("FullyConnected", 8, UNIT_BW, 0),)
    # 3 bytes -> chunk 8, m = 1: 14 × (1 + 10) + 7 × red(1) 0 + 10 = 164 (not 14 × 10 + 10).
    assert collective_ns("all_reduce", 3, fc8, system) == 164
    assert collective_ns("all_reduce", 0, fc8, system) == 164
    # All-gathers are not rounded up: 7 × (3 + 10) + 10 = 101.
    assert collective_ns("all_gather", 3, fc8, system) == 101
    # The round-up uses all 16 NPUs of the system, not the 4 of the group: 4 bytes -> 16,
    # m = 4 on p = 4: 6 × (4 + 10) + 10 = 94 (a group-sized round-up would give 76).
    dims = (Dimension("FullyConnected", 4, UNIT_BW, 0), Dimension("FullyConnected", 4, 1, 0))
    assert collective_ns("all_reduce", 4, dims, system, involved=(True, False)) == 94
    # With splits the chunk is rounded up: 16 bytes / 4 splits = 4 < 8 -> 4 chunks of 8 bytes.
    split4 = SystemConfig(local_mem_bw=100, preferred_dataset_splits=4)
    assert collective_ns("all_reduce", 16, fc8, split4) == 4 * 164


def test_congestion_aware_model_rejects_multi_dimensional_networks():
    with pytest.raises(ValueError, match="only 1-D topologies"):
        collective_ns("all_reduce", MIB, TWO_D, two_d("baseline"), aware=True)


def test_bad_collective_arguments():
    with pytest.raises(ValueError, match="unknown collective"):
        collective_ns("broadcast", MIB, TWO_D, GOLDEN_SYSTEM)
    with pytest.raises(ValueError, match=">= 0"):
        collective_ns("all_reduce", -1, TWO_D, GOLDEN_SYSTEM)


@pytest.mark.parametrize("args,match", [
    (("Torus", 4, 50, 500), "unknown topology"), (("ring", 4, 50, 500), "unknown topology"),
    (("Ring", 0, 50, 500), "npus_count"), (("Ring", 2.0, 50, 500), "npus_count"),
    (("Ring", 4, 0, 500), "bandwidth"), (("Ring", 4, float("nan"), 500), "bandwidth"),
    (("Ring", 4, 50, -1), "latency")])
def test_bad_dimensions(args, match):
    with pytest.raises(ValueError, match=match):
        Dimension(*args)


def test_hops_and_coordinates():
    ring = Dimension("Ring", 8, 50, 500)
    assert (ring.hops(1, 7), ring.hops(0, 4), ring.hops(6, 1), ring.hops(3)) == (2, 4, 3, 3)
    assert Dimension("Switch", 8, 50, 500).hops(0, 1) == 2
    assert Dimension("FullyConnected", 8, 50, 500).hops(0, 5) == 1
    # id = x0 + 4 × x1 on FullyConnected 4 × Switch 2.
    assert coordinates(6, TWO_D) == (2, 1)
    assert npu_id((2, 1), TWO_D) == 6
    assert [npu_id(coordinates(n, TWO_D), TWO_D) for n in range(8)] == list(range(8))


def test_net_ns_truncates_once():
    dim = Dimension("Switch", 8, 50, 500)
    # floor(2 × 500 + 131072 / 53.6870912) = floor(1000 + 2441.40625) = 3441.
    assert dim.net_ns(131072, 2) == 3441
    assert (dim.busy_ns(131072), dim.link_ns(131072)) == (2441, 2941)


def test_system_json_keys_are_read():
    cfg = SystemConfig.from_json_dict({
        "scheduling-policy": "FIFO", "endpoint-delay": 20, "active-chunks-per-dimension": 2,
        "preferred-dataset-splits": 4, "collective-optimization": "baseline",
        "local-mem-bw": 768, "all-reduce-implementation": ["direct8", "ring"],
        "boost-mode": 0, "local-reduction-delay": 1})
    assert (cfg.scheduling_policy, cfg.endpoint_delay, cfg.active_chunks_per_dimension,
            cfg.preferred_dataset_splits, cfg.collective_optimization, cfg.local_mem_bw) == \
        ("FIFO", 20, 2, 4, "baseline", 768.0)
    assert cfg.algorithms("all_reduce") == ("direct", "ring")
    assert cfg.algorithms("all_to_all") == ("ring",)
    assert SystemConfig.from_json_dict({}) == SystemConfig()
    assert SystemConfig.from_json_dict({"endpoint-delay": 0}).endpoint_delay == 0  # casys


@pytest.mark.parametrize("raw,match", [
    ({"endpoint-delay": -1}, "endpoint-delay"),
    ({"endpoint-delay": 2.5}, "endpoint-delay"),
    ({"preferred-dataset-splits": 0}, "preferred-dataset-splits"),
    ({"active-chunks-per-dimension": 0}, "active-chunks-per-dimension"),
    ({"local-mem-bw": 0}, "local-mem-bw"),
    ({"scheduling-policy": "RANDOM"}, "scheduling-policy"),
    ({"collective-optimization": "fast"}, "collective-optimization"),
    ({"all-reduce-implementation": ["teleport"]}, "teleport"),
    ({"all-gather-implementation": "ring"}, "all-gather-implementation"),
    ({"all-to-all-implementation": []}, "all-to-all-implementation"),
])
def test_bad_system_json(raw, match):
    with pytest.raises(ValueError, match=match):
        SystemConfig.from_json_dict(raw)
