"""Collective and point-to-point times: the golden values of engine.md §6 and hand-derived cases."""

from __future__ import annotations

import math

import pytest

from astra_sim import Dimension, SystemConfig, collective_ns, send_ns

MIB = 1 << 20
GOLDEN_SYSTEM = SystemConfig(endpoint_delay=10, local_mem_bw=1600)
KINDS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all")
# engine.md §6.4: (topology, p, MiB) -> AR, AG, RS, A2A unaware, then aware.
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
CASES = [(topo, p, mib, aware, kind, values[KINDS.index(kind) + 4 * aware])
         for (topo, p, mib), values in GOLDEN.items() for aware in (False, True)
         for kind in KINDS]


@pytest.mark.parametrize("topology,p,mib,aware,kind,expected", CASES)
def test_golden_ring_collectives(topology, p, mib, aware, kind, expected):
    dims = (Dimension(topology, p, 50, 500),)
    assert collective_ns(kind, mib * MIB, dims, GOLDEN_SYSTEM, aware=aware) == expected


@pytest.mark.parametrize("topology,aware,expected", [
    ("FullyConnected", False, 20031), ("Switch", True, 40062), ("Switch", False, 20531)])
def test_golden_point_to_point(topology, aware, expected):
    # 1 MiB at 50 GB/s (53.687 B/ns) = 19,531.25 ns + 500 ns per hop; no endpoint delay.
    assert send_ns(MIB, (Dimension(topology, 8, 50, 500),), 0, 5, aware=aware) == expected


FC8 = (Dimension("FullyConnected", 8, 50, 500),)
RING8 = (Dimension("Ring", 8, 50, 500),)
B = 50 * 2**30 / 1e9


def net(nbytes: int, hops: int = 1) -> int:
    return math.floor(hops * 500 + nbytes / B)


def red(nbytes: int) -> int:
    return 3 * math.floor(nbytes / 1600)


def direct(system: SystemConfig) -> SystemConfig:
    return SystemConfig(local_mem_bw=1600, all_reduce=("direct",), all_gather=("direct",),
                        reduce_scatter=("direct",), all_to_all=("direct",))


def test_direct_on_fully_connected():
    sysd = direct(GOLDEN_SYSTEM)
    c = MIB
    # A2A = ep + net(C/p) + ep = 10 + floor(500 + 131072/53.687) + 10 = 10 + 2941 + 10.
    assert net(c // 8) == 2941
    assert collective_ns("all_to_all", c, FC8, sysd) == 2961
    assert collective_ns("reduce_scatter", c, FC8, sysd) == 2961 + red(c // 8)
    assert collective_ns("all_reduce", c, FC8, sysd) == 2961 + red(c // 8) + 2941 + 10
    assert collective_ns("all_gather", c, FC8, sysd) == 10 + net(c) + 10


def test_direct_on_a_ring_pays_the_farthest_peer():
    # On an 8-NPU ring the farthest peer is 4 hops away.
    assert collective_ns("all_to_all", MIB, RING8, direct(GOLDEN_SYSTEM)) == \
        10 + net(MIB // 8, 4) + 10


def test_direct_all_to_all_on_an_aware_switch_serialises_the_uplink():
    dims = (Dimension("Switch", 8, 50, 500),)
    m = MIB // 8
    expected = 6 * math.floor(m / B) + 2 * math.floor(500 + m / B) + 2 * 10
    assert collective_ns("all_to_all", MIB, dims, direct(GOLDEN_SYSTEM), aware=True) == expected


def halving_doubling() -> SystemConfig:
    return SystemConfig(local_mem_bw=1600, all_reduce=("halvingDoubling",),
                        all_gather=("halvingDoubling",), reduce_scatter=("halvingDoubling",))


def test_halving_doubling_on_fully_connected():
    c = 8 * MIB
    rs = sum(net(c >> k) + 10 for k in (1, 2, 3)) + 10 + red(c >> 2) + red(c >> 3)
    assert collective_ns("reduce_scatter", c, FC8, halving_doubling()) == rs
    assert collective_ns("all_reduce", c, FC8, halving_doubling()) == \
        rs + sum(net(c >> k) + 10 for k in (1, 2, 3))
    assert collective_ns("all_gather", MIB, FC8, halving_doubling()) == \
        sum(net(MIB << k) + 10 for k in (0, 1, 2)) + 10


def test_halving_doubling_on_a_ring_uses_partner_distance():
    c = 8 * MIB
    # Reduce-scatter partners are 4, 2, 1 ring hops away.
    rs = (net(c >> 1, 4) + net(c >> 2, 2) + net(c >> 3, 1) + 3 * 10 + 10
          + red(c >> 2) + red(c >> 3))
    assert collective_ns("reduce_scatter", c, RING8, halving_doubling()) == rs


def test_halving_doubling_rejects_non_powers_of_two_and_all_to_all():
    with pytest.raises(ValueError):
        collective_ns("all_reduce", MIB, (Dimension("FullyConnected", 6, 50, 500),),
                      halving_doubling())
    with pytest.raises(ValueError):
        collective_ns("all_to_all", MIB, FC8, SystemConfig(all_to_all=("halvingDoubling",)))


TWO_D = (Dimension("FullyConnected", 4, 200, 100), Dimension("Switch", 2, 25, 1000))


def ring_phase(op: str, dim: Dimension, size: int) -> int:
    p, ep = dim.npus, 10
    hops = 2 if dim.topology == "Switch" else 1

    def n(m):
        return math.floor(hops * dim.latency_ns + m / dim.bytes_per_ns)

    if op == "AR":
        return 2 * (p - 1) * (n(size // p) + ep) + (p - 1) * red(size // p) + ep
    if op == "RS":
        return (p - 1) * (n(size // p) + ep) + (p - 1) * red(size // p) + ep
    if op == "AG":
        return (p - 1) * (n(size) + ep) + ep
    return p * (p - 1) // 2 * (n(size // p) + ep) + ep


def two_d_system(optimization: str) -> SystemConfig:
    return SystemConfig(local_mem_bw=1600, collective_optimization=optimization,
                        all_reduce=("ring", "ring"), all_gather=("ring", "ring"),
                        reduce_scatter=("ring", "ring"), all_to_all=("ring", "ring"))


def test_two_dimensional_all_reduce_local_bw_aware():
    c = 4 * MIB
    fc, sw = TWO_D
    # RS on dim 0 (data / 4), AR on dim 1 on C/4, AG back on dim 0 with per-rank input C/4.
    expected = ring_phase("RS", fc, c) + ring_phase("AR", sw, c // 4) + ring_phase("AG", fc, c // 4)
    assert collective_ns("all_reduce", c, TWO_D, two_d_system("localBWAware")) == expected


def test_two_dimensional_all_reduce_baseline_and_other_collectives():
    c = 4 * MIB
    fc, sw = TWO_D
    assert collective_ns("all_reduce", c, TWO_D, two_d_system("baseline")) == \
        ring_phase("AR", fc, c) + ring_phase("AR", sw, c)
    assert collective_ns("all_gather", c, TWO_D, two_d_system("baseline")) == \
        ring_phase("AG", sw, c) + ring_phase("AG", fc, 2 * c)
    assert collective_ns("reduce_scatter", c, TWO_D, two_d_system("baseline")) == \
        ring_phase("RS", fc, c) + ring_phase("RS", sw, c // 4)
    assert collective_ns("all_to_all", c, TWO_D, two_d_system("baseline")) == \
        ring_phase("A2A", fc, c) + ring_phase("A2A", sw, c)


def test_involved_dims_and_short_implementation_lists_scope_the_collective():
    c = 4 * MIB
    fc, _ = TWO_D
    only_dim0 = collective_ns("all_reduce", c, TWO_D, two_d_system("localBWAware"),
                              involved=(True, False))
    assert only_dim0 == ring_phase("AR", fc, c)
    # LLMServingSim writes a single "ring" entry: only dimension 0 takes part.
    assert collective_ns("all_reduce", c, TWO_D, GOLDEN_SYSTEM) == only_dim0


def test_splits_and_active_chunks():
    one = collective_ns("all_reduce", MIB // 4, FC8, GOLDEN_SYSTEM)
    four = SystemConfig(local_mem_bw=1600, preferred_dataset_splits=4)
    assert collective_ns("all_reduce", MIB, FC8, four) == 4 * one
    both = SystemConfig(local_mem_bw=1600, preferred_dataset_splits=4,
                        active_chunks_per_dimension=2)
    assert collective_ns("all_reduce", MIB, FC8, both) == 2 * one


def test_tiny_collectives_round_up_to_one_byte_per_npu():
    assert collective_ns("all_reduce", 3, FC8, GOLDEN_SYSTEM) == \
        collective_ns("all_reduce", 8, FC8, GOLDEN_SYSTEM)
    # All-gathers are not rounded up: on a slow link 3 bytes cost less than 8.
    slow = (Dimension("FullyConnected", 8, 0.001, 0),)
    assert collective_ns("all_gather", 3, slow, GOLDEN_SYSTEM) < \
        collective_ns("all_gather", 8, slow, GOLDEN_SYSTEM)


def test_single_npu_and_bad_parameters():
    assert collective_ns("all_reduce", MIB, (Dimension("FullyConnected", 1, 50, 0),),
                         GOLDEN_SYSTEM) == 0
    with pytest.raises(ValueError):
        Dimension("Torus", 4, 50, 500)
    with pytest.raises(ValueError):
        collective_ns("all_reduce", MIB, TWO_D, two_d_system("baseline"), aware=True)
    with pytest.raises(ValueError):
        SystemConfig.from_json_dict({"all-reduce-implementation": ["teleport"]})


def test_system_json_keys_are_read():
    cfg = SystemConfig.from_json_dict({
        "scheduling-policy": "FIFO", "endpoint-delay": 20, "active-chunks-per-dimension": 2,
        "preferred-dataset-splits": 4, "collective-optimization": "baseline",
        "local-mem-bw": 768, "all-reduce-implementation": ["direct"], "boost-mode": 0})
    assert (cfg.scheduling_policy, cfg.endpoint_delay, cfg.active_chunks_per_dimension,
            cfg.preferred_dataset_splits, cfg.local_mem_bw, cfg.all_reduce) == \
        ("FIFO", 20, 2, 4, 768, ("direct",))
