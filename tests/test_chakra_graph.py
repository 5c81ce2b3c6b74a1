"""Iteration graphs: the engine's replay of a plan's graphs equals the closed-form pricer."""

from __future__ import annotations

import subprocess
import sys

import pytest

from astra_sim.chakra_et import CASYS_NUMBERING, read_et
from astra_sim.engine import Engine
from inference_serving.builder import build_instances
from inference_serving.chakra_graph import ChakraExporter, engine_setup, plan_graphs
from inference_serving.cluster_config import load_cluster_config
from inference_serving.options import RunOptions
from inference_serving.pricers import ClosedFormPricer
from inference_serving.request import Request
from llmsim_core.paths import MODEL_CONFIG_DIR, PERF_MODELS_DIR
from tests.conftest import REPO


def instance(config: str, index: int = 0):
    cluster = load_cluster_config(REPO / "cluster_config" / config)
    options = RunOptions(cluster_config=REPO / config, dataset=REPO / "x",
                         perf_models=PERF_MODELS_DIR, model_configs=MODEL_CONFIG_DIR)
    return cluster, build_instances(cluster, options, lambda msg: None)[index]


def a_batch(inst):
    sched = inst.scheduler
    for i, (prompt, output) in enumerate(((300, 4), (20, 9), (700, 2))):
        sched.add(Request(rid=i, arrival=0, prompt=prompt, output=output))
    first = sched.schedule(0)
    sched.update(first, 1)
    return sched.schedule(1)  # decodes plus nothing new: a mixed second iteration


def closed_form(inst, batch) -> list:
    pricer = ClosedFormPricer({inst.index: inst.fabric})
    return [pricer.price(plan, 0) for plan in inst.plans.plans(batch)]


@pytest.mark.parametrize("config", ["single_node_single_instance.json",
                                    "single_node_tp2_instance.json"])
def test_replayed_graph_equals_the_closed_form(config):
    cluster, inst = instance(config)
    batch = a_batch(inst)
    (plan,) = inst.plans.plans(batch)
    graphs = plan_graphs(plan, inst.fabric)
    result = Engine(*engine_setup(inst.fabric, len(cluster.nodes), 1)).replay(graphs)
    # TP ranks load their inputs as one joint access (pg_name) and start together.
    assert max(result.finish_ns.values()) == closed_form(inst, batch)[0].duration_ns
    assert sum(n.type == "COMM_COLL_NODE" for n in graphs[0]) == \
        (2 * inst.model.num_layers if inst.spec.tp > 1 else 0)


def test_export_then_python_m_astra_sim(tmp_path):
    cluster, inst = instance("single_node_tp2_instance.json")
    batch = a_batch(inst)
    prefix = ChakraExporter(len(cluster.nodes), tmp_path, "casys").write(inst, batch)
    done = subprocess.run([sys.executable, "-m", "astra_sim", "--workload", str(prefix),
                           "--network", str(prefix.parent / "network.yml"),
                           "--system", str(prefix.parent / "system.json"),
                           "--memory", str(prefix.parent / "memory.json"),
                           "--comm-group", str(prefix.parent / "comm_group.json"),
                           "--dialect", "casys"],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    expected = closed_form(inst, batch)[0].duration_ns
    assert done.stdout.splitlines()[0].startswith(f"sys[0] finished, {expected} cycles")


def test_pd_export_carries_the_kv_sends_and_replays_to_the_iteration_time(tmp_path):
    cluster, inst = instance("single_node_pd_instance.json")
    for i, prompt in enumerate((300, 40)):
        inst.scheduler.add(Request(rid=i, arrival=0, prompt=prompt, output=5))
    batch = inst.scheduler.schedule(0)
    prefix = ChakraExporter(len(cluster.nodes), tmp_path, "casys").write(inst, batch)
    sender = read_et(prefix.parent / "llm.0.et", CASYS_NUMBERING)[1]
    receiver = read_et(prefix.parent / "llm.1.et", CASYS_NUMBERING)[1]
    layers = inst.model.num_layers
    sends = [n for n in sender if n.type == "COMM_SEND_NODE"]
    # One K/V send per layer after v_proj (2 · 340 tokens · kvd 1024 · 2 B) plus the token ids.
    assert len(sends) == layers + 1
    assert [n.attr("comm_size") for n in sends[:-1]] == [2 * 340 * 1024 * 2] * layers
    assert sends[-1].attr("comm_size") == 2 * 4
    assert sum(n.type == "COMM_RECV_NODE" for n in receiver) == layers + 1
    config, memory = engine_setup(inst.fabric, len(cluster.nodes), 1)
    graphs = plan_graphs(inst.plans.plans(batch)[0], inst.fabric, receivers=True)
    replayed = Engine(config, memory).replay(graphs, fast=False)
    assert max(replayed.finish_ns.values()) == closed_form(inst, batch)[0].duration_ns


def test_cli_export_writes_one_directory_per_batch(tmp_path):
    out = tmp_path / "chakra"
    done = subprocess.run([sys.executable, "main.py", "--dataset", "dataset/example_trace.jsonl",
                           "--num-req", "3", "--export-chakra", str(out), "--no-progress"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    batches = sorted(p.name for p in out.iterdir())
    assert batches and all(b.startswith("instance0_batch") for b in batches)
    assert (out / batches[0] / "llm.0.et").is_file()


@pytest.mark.parametrize("config", ["single_node_pp2_instance.json",
                                    "single_node_tp2_pp2_instance.json"])
def test_pipeline_stage_graphs_replay_to_one_pass_through_the_pipeline(config):
    cluster, inst = instance(config)
    batch = a_batch(inst)
    graphs = {}
    plans = inst.plans.plans(batch)
    for plan in plans:
        graphs.update(plan_graphs(plan, inst.fabric))
    assert sorted(graphs) == list(range(inst.spec.npu_num))
    config_, memory = engine_setup(inst.fabric, len(cluster.nodes), len(plans))
    result = Engine(config_, memory).replay(graphs)
    # A lone batch: stage times plus one activation send per stage boundary.
    costs = closed_form(inst, batch)
    expected = sum(c.duration_ns + c.forward_ns for c in costs)
    assert max(result.finish_ns.values()) == expected
