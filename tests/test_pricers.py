"""Pricers: the closed form and the engine replay agree; shared memories need the replay."""

from __future__ import annotations

import copy

import pytest

from astra_sim import Dimension, SystemConfig
from inference_serving.api import simulate
from inference_serving.builder import choose_pricer
from inference_serving.cluster_config import InstanceSpec, MemorySpec, load_cluster_config
from inference_serving.fabric import InstanceFabric
from inference_serving.options import RunOptions
from inference_serving.pricers import PRICERS, ClosedFormPricer, ReplayPricer
from llmsim_core.iteration_plan import (
    COLLECTIVE,
    HOST,
    LOAD,
    IterationPlan,
    LayerGroup,
    PlanOp,
    compute,
)
from tests.conftest import REPO
from tests.test_cli_errors import run_main

CONFIGS = sorted(p.name for p in (REPO / "cluster_config").glob("*.json"))


@pytest.mark.parametrize("config", CONFIGS)
def test_replay_and_closed_form_write_the_same_csv(tmp_path, config):
    common = ["--cluster-config", f"cluster_config/{config}", "--dataset",
              "dataset/example_sharegpt_req100_rate10.jsonl", "--num-req", "100"]
    closed, replay = tmp_path / "closed.csv", tmp_path / "replay.csv"
    done = run_main([*common, "--output", str(closed)])
    assert done.returncode == 0, done.stderr
    done = run_main([*common, "--output", str(replay), "--pricer", "replay"])
    assert done.returncode == 0, done.stderr
    assert closed.read_bytes() == replay.read_bytes()


def _fabric(instance: int) -> InstanceFabric:
    # CPU memory: 2 B/ns, no latency; one TP rank; a link that does not matter here.
    spec = InstanceSpec(instance, 0, "m", "A6000", MemorySpec(1 << 30, 1.0, 0), 1, 1, None,
                        first_npu=instance)
    return InstanceFabric(spec=spec, host=MemorySpec(1 << 30, 2.0, 0),
                          tp_dim=Dimension("FullyConnected", 1, 100.0, 0.0),
                          system=SystemConfig())


def _streaming_plan(instance: int) -> IterationPlan:
    """An iteration that streams 1 MB of weights from the node's CPU memory, then computes
    5,000 ns on them."""
    weights = PlanOp(LOAD, "weights", nbytes=1_000_000, target=HOST)
    return IterationPlan(instance, 0, 0, 1, 8, 1, (weights,),
                         (LayerGroup(0, 1, (compute("matmul", 5000, 8),)),))


def test_two_instances_streaming_weights_queue_on_the_shared_cpu_memory():
    fabrics = {0: _fabric(0), 1: _fabric(1)}
    for pricer in (ReplayPricer(fabrics, num_nodes=1), ClosedFormPricer(fabrics)):
        # Both start at t = 10,000. The load takes 1,000,000 B / 2 B/ns = 500,000 ns.
        first = pricer.price(_streaming_plan(0), 10_000)
        second = pricer.price(_streaming_plan(1), 10_000)
        assert first.duration_ns == 500_000 + 5000
        # The second load waits for the first on the node's FIFO: 1,000,000 ns, then compute.
        assert second.duration_ns == 2 * 500_000 + 5000
        # Instance 0 starts again at 600,000, while instance 1's load holds the FIFO until
        # 1,010,000: it waits 410,000 ns, then loads and computes.
        assert pricer.price(_streaming_plan(0), 600_000).duration_ns == 410_000 + 505_000
        # Later, with the FIFO idle, each iteration takes 505,000 ns again.
        assert pricer.price(_streaming_plan(1), 3_000_000).duration_ns == 505_000
    # Alone on its node, back-to-back iterations of one instance never wait.
    alone = ClosedFormPricer({0: _fabric(0)})
    assert [alone.price(_streaming_plan(0), t).duration_ns for t in (0, 505_000)] == \
        [505_000, 505_000]


def test_external_pricer_needs_a_binary():
    cluster = load_cluster_config(REPO / "cluster_config/single_node_single_instance.json")
    options = RunOptions(cluster_config=REPO, dataset=REPO, pricer="external")
    with pytest.raises(Exception, match="needs an ASTRA-Sim binary"):
        choose_pricer(cluster, options, {})


def test_a_packet_level_network_times_the_replayed_collectives_too():
    # With --network-backend ns3 the fabric's collective function is ns-3's; here a stand-in
    # that charges 12,345 ns per collective, on a TP2 instance.
    spec = InstanceSpec(0, 0, "m", "A6000", MemorySpec(1 << 30, 1.0, 0), 2, 1, None,
                        first_npu=0)
    fabric = InstanceFabric(spec=spec, host=MemorySpec(1 << 30, 2.0, 0),
                            tp_dim=Dimension("FullyConnected", 2, 100.0, 0.0),
                            system=SystemConfig(), backend="ns3",
                            _collective=lambda kind, nbytes: 12_345)
    reduce = PlanOp(COLLECTIVE, "all_reduce", nbytes=4096, target="all_reduce")
    plan = IterationPlan(0, 0, 0, 2, 8, 1, (),
                         (LayerGroup(0, 3, (compute("matmul", 1000, 8), reduce)),))
    expected = 3 * (1000 + 12_345)
    assert ClosedFormPricer({0: fabric}).price(plan, 0).duration_ns == expected
    assert ReplayPricer({0: fabric}, num_nodes=1).price(plan, 0).duration_ns == expected


class FamilyChecked(ClosedFormPricer):
    """The closed form, checking every family-priced stage against pricing its built plan
    (on a copy of the memory calendar, so the run itself is unchanged)."""

    def __init__(self, fabrics) -> None:
        super().__init__(fabrics)
        self.checked = 0

    def price_family(self, family, stage, start_ns):
        saved = copy.deepcopy(self.memory.calendar)
        expected = self.price(family.plans()[stage], start_ns)
        self.memory.calendar = saved
        got = super().price_family(family, stage, start_ns)
        assert (got.duration_ns, got.forward_ns) == (expected.duration_ns, expected.forward_ns)
        assert got.usage() == expected.usage()
        self.checked += 1
        return got


@pytest.mark.parametrize("config", ["single_node_single_instance.json",
                                    "dual_node_multi_instance.json",
                                    "single_node_tp2_instance.json",
                                    "single_node_pd_instance.json",
                                    "single_node_moe_instance.json"])
def test_pricing_a_plan_family_equals_pricing_its_plans(monkeypatch, config):
    made: list[FamilyChecked] = []

    def factory(fabrics, nodes, binary):
        made.append(FamilyChecked(fabrics))
        return made[-1]

    monkeypatch.setitem(PRICERS, "closed-form", factory)
    simulate(REPO / "cluster_config" / config,
             REPO / "dataset" / "example_sharegpt_req100_rate10.jsonl", num_req=60)
    assert made and made[0].checked > 100  # streaming batches were priced by family
