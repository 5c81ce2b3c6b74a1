"""Iteration graphs: the engine's replay of the exported graph equals the serving closed form."""

from __future__ import annotations

import subprocess
import sys

import pytest

from astra_sim.engine import Engine
from inference_serving.builder import build_instances
from inference_serving.chakra_graph import ChakraExporter, instance_engine, iteration_graph
from inference_serving.cluster_config import load_cluster_config
from inference_serving.options import RunOptions
from inference_serving.request import Request
from llmsim_core.paths import MODEL_CONFIG_DIR, PERF_MODELS_DIR
from tests.conftest import REPO


def instance(config: str):
    cluster = load_cluster_config(REPO / "cluster_config" / config)
    options = RunOptions(cluster_config=REPO / config, dataset=REPO / "x",
                         perf_models=PERF_MODELS_DIR, model_configs=MODEL_CONFIG_DIR)
    return cluster, build_instances(cluster, options, lambda msg: None)[0]


def a_batch(inst):
    sched = inst.scheduler
    for i, (prompt, output) in enumerate(((300, 4), (20, 9), (700, 2))):
        sched.add(Request(rid=i, arrival=0, prompt=prompt, output=output))
    first = sched.schedule(0)
    sched.update(first, 1)
    return sched.schedule(1)  # decodes plus nothing new: a mixed second iteration


@pytest.mark.parametrize("config,tolerance_ns", [("single_node_single_instance.json", 0),
                                                 ("single_node_tp2_instance.json", 100)])
def test_replayed_graph_matches_the_closed_form(config, tolerance_ns):
    cluster, inst = instance(config)
    batch = a_batch(inst)
    closed = inst.timer.iteration_ns(batch)
    engine_config, memory = instance_engine(cluster, inst.spec)
    graph = iteration_graph(inst.timer, batch)
    result = Engine(engine_config, memory).replay({r: graph for r in range(inst.spec.tp)})
    # TP ranks queue their input loads on one host-memory FIFO; the closed form releases them
    # together after the last load, the replay lets each start early: a few ns apart at most.
    assert abs(max(result.finish_ns.values()) - closed) <= tolerance_ns
    assert sum(n.type == "COMM_COLL_NODE" for n in graph) == \
        (2 * inst.model.num_layers if inst.spec.tp > 1 else 0)


def test_export_then_python_m_astra_sim(tmp_path):
    cluster, inst = instance("single_node_tp2_instance.json")
    batch = a_batch(inst)
    prefix = ChakraExporter(cluster, tmp_path, "casys").write(inst, batch)
    done = subprocess.run([sys.executable, "-m", "astra_sim", "--workload", str(prefix),
                           "--network", str(prefix.parent / "network.yml"),
                           "--system", str(prefix.parent / "system.json"),
                           "--memory", str(prefix.parent / "memory.json"), "--dialect", "casys"],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    engine_config, memory = instance_engine(cluster, inst.spec)
    graph = iteration_graph(inst.timer, batch)
    expected = Engine(engine_config, memory).replay({0: graph, 1: graph})
    assert done.stdout.splitlines()[0].startswith(
        f"sys[0] finished, {expected.finish_ns[0]} cycles")


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
    from inference_serving.chakra_graph import stage_graphs

    cluster, inst = instance(config)
    batch = a_batch(inst)
    graphs = stage_graphs(inst.timer, batch, inst.spec.tp)
    assert sorted(graphs) == list(range(inst.spec.npu_num))
    engine_config, memory = instance_engine(cluster, inst.spec)
    result = Engine(engine_config, memory).replay(graphs)
    # A lone batch: stage times plus one activation send per stage boundary.
    expected = sum(inst.timer.stage_ns(batch)) + \
        (inst.spec.pp - 1) * inst.timer.stage_send_ns(batch)
    assert abs(max(result.finish_ns.values()) - expected) <= 100
