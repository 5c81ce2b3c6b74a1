"""Weight placement and CXL memory (formats.md §1.5–1.6, serving.md §5, §6.6, §7, §12)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from inference_serving.builder import build_instances
from inference_serving.cluster_config import cluster_from_dict, load_cluster_config
from inference_serving.expert_router import expert_router
from inference_serving.memory_model import resident_weight_bytes
from inference_serving.options import RunOptions
from inference_serving.placement import WeightMap, parse_placement, parse_ranges
from inference_serving.plan_builder import PlanBuilder
from inference_serving.pricers import ClosedFormPricer, ReplayPricer
from inference_serving.request import Request
from inference_serving.scheduler.base import Batch
from inference_serving.weight_loads import WeightLoads
from llmsim_core.errors import InputError
from llmsim_core.iteration_plan import FETCH, PREFETCH
from llmsim_core.model_config import ModelConfig
from llmsim_core.op_templates import moe_template
from llmsim_core.paths import MODEL_CONFIG_DIR, PERF_MODELS_DIR
from tests.conftest import DATA, needs_data
from tests.plan_helpers import StubFabric
from tests.test_cli_errors import GOOD_LINE, SINGLE, run_main, write_json, write_trace
from tests.test_disaggregation import ConstantPerf

GIB = 1 << 30
LLAMA70B = ModelConfig("meta-llama/Llama-3.1-70B", 8192, 80, 64, 8, 28672, 128256, 131072)
MOE = ModelConfig("moe", 256, 2, 4, 2, 512, 1000, 4096, num_experts=4, experts_per_token=2)
CXL = {"mem_size": 64, "mem_bw": 60, "mem_latency": 250, "num_devices": 2}


def with_placement(placement: object, cxl: dict | None = None, **instance: object) -> dict:
    cfg = json.loads(json.dumps(SINGLE))
    cfg["nodes"][0]["instances"][0]["placement"] = placement
    cfg["nodes"][0]["instances"][0].update(instance)
    if cxl is not None:
        cfg["cxl_mem"] = cxl
    return cfg


def small_host(cfg: dict) -> dict:
    cfg["nodes"][0]["cpu_mem"]["mem_size"] = 8
    return cfg


# --- parsing ------------------------------------------------------------------------------

def test_locations_are_case_insensitive_and_rules_resolve_by_priority():
    placement = parse_placement({
        "default": {"weights": "NPU0", "kv_loc": "npu", "kv_evict_loc": "CXL:1"},
        "blocks": [{"blocks": "3-1,7", "weights": "cpu"}, {"blocks": "2", "weights": "Cxl:0"}],
        "layers": {"lm_head": {"weights": "cpu"}, "q_proj": {"kv_loc": "npu"},
                   "k_proj": {}},
    }, "here", cxl_devices=2)
    assert placement.kv_evict_loc == "cxl:1"
    weights = placement.resolve(8, ("q_proj", "k_proj", "lm_head"), "here")
    # Later block rules override earlier ones; 3-1 is swapped to 1-3.
    assert weights.per_block == ("npu", "cpu", "cxl:0", "cpu", "npu", "npu", "npu", "cpu")
    assert weights.of("lm_head", -1) == "cpu"
    # A layer rule wins over the block rule, its unset weights fall back to the default ...
    assert weights.of("q_proj", 1) == "npu"
    # ... and an empty layer rule leaves the operator to the block rules.
    assert weights.of("k_proj", 1) == "cpu"
    assert weights.of("o_proj", 2) == "cxl:0" and weights.block_mode


def test_the_cluster_stores_the_resolved_eviction_location():
    cluster = cluster_from_dict(with_placement({"default": {"kv_evict_loc": "cxl:1"}}, CXL), "c")
    assert cluster.instances[0].kv_evict_loc == "cxl:1"
    assert cluster_from_dict(SINGLE, "c").instances[0].kv_evict_loc == "cpu"


def test_range_expressions():
    assert parse_ranges("0-3,5, 9-7", "w") == ((0, 3), (5, 5), (7, 9))
    assert parse_ranges(4, "w") == ((4, 4),)
    for bad in ("", "1-", "a", "1-2-3", "-1", "1,,2"):
        with pytest.raises(InputError):
            parse_ranges(bad, "w")


# --- bad configs: one error line, exit 2, no output -------------------------------------

BAD = {
    "unknown_location": (with_placement({"default": {"weights": "bogus:9"}}),
                         "unknown location 'bogus:9'"),
    "not_a_string": (with_placement({"default": {"weights": 3}}), "is not a string"),
    "cxl_without_index": (with_placement({"default": {"weights": "cxl"}}, CXL),
                          "has no device index"),
    "cxl_index_out_of_range": (with_placement({"layers": {"lm_head": {"weights": "cxl:2"}}},
                                              CXL), "CXL device 2 does not exist"),
    "cxl_without_cxl_mem": (with_placement({"default": {"weights": "cxl:0"}}),
                            "needs the top-level cxl_mem pool"),
    "negative_cxl_size": (with_placement({}, {**CXL, "mem_size": -5}), "mem_size"),
    "negative_cxl_bandwidth": (with_placement({}, {**CXL, "mem_bw": -1}), "mem_bw"),
    "zero_cxl_devices": (with_placement({}, {**CXL, "num_devices": 0}), "num_devices"),
    "unknown_placement_key": (with_placement({"block": []}), "unknown key 'block'"),
    "unknown_rule_key": (with_placement({"default": {"weight": "cpu"}}),
                         "unknown key 'weight'"),
    "unknown_operator": (with_placement({"layers": {"mlp": {"weights": "cpu"}}}),
                         "unknown operator 'mlp'"),
    "operator_not_in_model": (with_placement({"layers": {"expert": {"weights": "cpu"}}}),
                              "operator 'expert'"),
    "malformed_range": (with_placement({"blocks": [{"blocks": "0-3-5", "weights": "cpu"}]}),
                        "malformed block range part '0-3-5'"),
    "empty_range": (with_placement({"blocks": [{"blocks": "", "weights": "cpu"}]}),
                    "is not a non-empty string"),
    "rule_without_blocks": (with_placement({"blocks": [{"weights": "cpu"}]}),
                            "needs a \"blocks\" range"),
    "block_out_of_range": (with_placement({"blocks": [{"blocks": "30-40", "weights": "cpu"}]}),
                           "block 40 is out of range"),
    "evict_to_device": (with_placement({"default": {"kv_evict_loc": "npu"}}),
                        "kv_evict_loc 'npu'"),
    "evict_differs_in_rule": (with_placement(
        {"blocks": [{"blocks": "0", "kv_evict_loc": "cxl:0"}]}, CXL), "only the default's"),
    "bad_kv_loc": (with_placement({"default": {"kv_loc": "gpu"}}), "unknown location 'gpu'"),
    "placement_not_object": (with_placement(["cpu"]), "placement is not a JSON object"),
    # 16,060,522,496 B of Llama-3.1-8B weights do not fit in an 8 GiB pool or host memory.
    "weights_exceed_cxl_pool": (with_placement({"default": {"weights": "cxl:0"}},
                                               {**CXL, "mem_size": 8}),
                                "14.96 GiB of weights are placed in cxl_mem, which holds 8.00"),
    "weights_exceed_host_memory": (small_host(with_placement({"default": {"weights": "cpu"}})),
                                   "placed in nodes[0].cpu_mem"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_placement_is_one_error_line(tmp_path, name):
    cfg, needle = BAD[name]
    trace = write_trace(tmp_path / "ok.jsonl", [json.dumps(GOOD_LINE)] * 3)
    out = tmp_path / "out.csv"
    done = run_main(["--cluster-config", str(write_json(tmp_path / "c.json", cfg)),
                     "--dataset", str(trace), "--output", str(out)])
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert needle in lines[0]
    assert not out.exists()


# --- memory: offloaded weights leave device memory -----------------------------------------

def test_offloaded_blocks_free_device_memory_for_kv():
    half = WeightMap("npu", ("npu",) * 40 + ("cpu",) * 40, {})
    # Per NPU at TP2: embedding and lm_head 1,050,673,152 B each, final norm 16,384 B, one
    # block 855,670,784 B (norms 2 x 16,384, q and o 67,108,864, k and v 8,388,608, three FFN
    # matrices 234,881,024 each).
    assert resident_weight_bytes(LLAMA70B, 2, 1, 2, half) == \
        2 * 1_050_673_152 + 16_384 + 40 * 855_670_784
    assert resident_weight_bytes(LLAMA70B, 2, 1, 2, None) == \
        2 * 1_050_673_152 + 16_384 + 80 * 855_670_784
    # Pipeline stages: the heaviest stage keeps the 40 resident blocks.
    assert resident_weight_bytes(LLAMA70B, 2, 2, 2, half) == \
        2 * 1_050_673_152 + 16_384 + 40 * 855_670_784
    everything = WeightMap("cxl:0", None, {})
    assert resident_weight_bytes(LLAMA70B, 2, 1, 2, everything) == 0


# --- worked number: Llama-3.1-70B on 2 x H100, last 40 blocks on the CPU ------------------

H100_70B = {
    "num_nodes": 1, "link_bw": 450, "link_latency": 0,
    "nodes": [{"num_instances": 1,
               "cpu_mem": {"mem_size": 512, "mem_bw": 256, "mem_latency": 100},
               "instances": [{"model_name": "meta-llama/Llama-3.1-70B", "hardware": "H100",
                              "npu_mem": {"mem_size": 80, "mem_bw": 3350, "mem_latency": 0},
                              "npu_num": 2, "npu_group": 1, "pd_type": None,
                              "placement": {"blocks": [{"blocks": "40-79",
                                                        "weights": "cpu"}]}}]}],
}
# One rank's loads of one block at 256 B/ns and 100 ns per access: two norms 100 + 64 ns,
# q and o 100 + 262,144, k and v 100 + 32,768, three FFN matrices 100 + 917,504.
BLOCK_LOAD_NS = 2 * 164 + 2 * 262_244 + 2 * 32_868 + 3 * 917_604
assert BLOCK_LOAD_NS == 3_343_364
# Both ranks' loads queue on the node's memory FIFO behind the 4-byte input load (100 ns each).
LAST_LOAD_ENDS = 2 * 100 + 40 * 2 * BLOCK_LOAD_NS
assert LAST_LOAD_ENDS == 267_469_320


def h100_instance(tmp_path: Path):
    cluster = load_cluster_config(write_json(tmp_path / "c.json", H100_70B))
    options = RunOptions(cluster_config=tmp_path / "c.json", dataset=tmp_path / "x",
                         perf_models=DATA / "perf_models", model_configs=MODEL_CONFIG_DIR)
    return cluster, build_instances(cluster, options, lambda msg: None)[0]


@needs_data
def test_llama70b_fits_on_two_h100_with_40_blocks_on_the_cpu_and_pays_their_load(tmp_path):
    cluster, inst = h100_instance(tmp_path)
    # 36,328,194,048 B of resident weights leave (80 GiB - that) // (16 tokens x 163,840 B)
    # blocks for KV: 18,909 instead of 5,853 with every block on the device.
    assert inst.budget.weight_bytes == 36_328_194_048
    assert inst.kv.num_blocks == 18_909
    request = Request(rid=0, arrival=0, prompt=8, output=4)
    request.num_tokens = request.computed = 9
    decode = Batch(1, [request], [1], [True])
    (plan,) = inst.plans.plans(decode)
    loads = [op for op, n in plan.ops() for _ in range(n) if op.kind == PREFETCH]
    assert len(loads) == 40 * 9 and sum(op.nbytes for op in loads) == 40 * 855_670_784
    # After the last load (block 79's down_proj) the chain still runs down_proj, its
    # all-reduce, the final norm, lm_head and the output store (4 bytes: 100 ns per rank).
    perf, fabric = inst.plans.perf, inst.fabric
    tail = perf.layer_ns("down_proj", 1) + fabric.collective_ns("all_reduce", 8192 * 2) + \
        perf.layer_ns("final_layernorm", 1) + perf.layer_ns("lm_head", 1) + 2 * 100
    for pricer in (ClosedFormPricer({0: fabric}), ReplayPricer({0: fabric}, 1)):
        assert pricer.price(plan, 5_000_000).duration_ns == LAST_LOAD_ENDS + tail
    # End to end, every decode iteration of a lone request pays exactly that.
    trace = write_trace(tmp_path / "t.jsonl", [json.dumps(
        {"input_toks": 8, "output_toks": 4, "arrival_time_ns": 0})])
    out = tmp_path / "out.csv"
    done = run_main(["--cluster-config", str(tmp_path / "c.json"), "--dataset", str(trace),
                     "--perf-models", str(DATA / "perf_models"), "--output", str(out)])
    assert done.returncode == 0, done.stderr
    (row,) = csv.DictReader(out.open())
    assert json.loads(row["ITL"]) == [LAST_LOAD_ENDS + tail] * 3


# --- the existing simulator's CXL example --------------------------------------------------

def _example(tmp_path: Path, config: str) -> dict:
    out = tmp_path / f"{config}.csv"
    done = run_main(["--cluster-config", str(DATA / f"cluster_config/{config}.json"),
                     "--dataset", str(DATA / "datasets/example_trace.jsonl"),
                     "--perf-models", str(DATA / "perf_models"), "--num-req", "10",
                     "--fp", "16", "--block-size", "16", "--output", str(out),
                     "--compat", "artifact", "--scheduler", "legacy"])
    assert done.returncode == 0, done.stderr
    return {r["request id"]: r for r in csv.DictReader(out.open())}


@needs_data
def test_cxl_example_matches_the_existing_simulator(tmp_path):
    ours = _example(tmp_path, "single_node_cxl_instance")
    with (DATA / "reference_sim/examples/example_cxl_run.csv").open() as handle:
        ref = {r["request id"]: r for r in csv.DictReader(handle)}
    assert ours.keys() == ref.keys()
    for rid, row in ref.items():
        # Every iteration waits ~112 ms for CXL device 3 (13 blocks and lm_head at 60 GB/s).
        assert abs(int(ours[rid]["end_time"]) / int(row["end_time"]) - 1) < 0.01, rid
        assert int(ours[rid]["end_time"]) == int(row["end_time"]), rid
        assert ours[rid]["ITL"] == row["ITL"], rid


@needs_data
def test_all_npu_block_placement_times_like_no_placement(tmp_path):
    # The weight-offload example places every block on the device: block mode builds each block
    # on its own but with the same latency (serving.md §6.4), so the run equals the plain one.
    # (The existing simulator's output for this example is ~3.4x faster per iteration than its
    # own single-instance run of the same trace, which §6.4 rules out; see docs.)
    placed = _example(tmp_path, "single_node_memory_instance")
    plain = _example(tmp_path, "single_node_single_instance")
    assert placed == plain


# --- MoE experts, local offloading, shared CXL FIFOs --------------------------------------

@pytest.mark.parametrize("tp,tokens,active", [(1, 1, 2), (1, 6, 4), (2, 6, 2)])
def test_offloaded_experts_fetch_the_activated_experts_after_the_gate(tp, tokens, active):
    weights = WeightLoads(MOE, tp, 2, WeightMap("npu", None, {"expert": "cpu"}), False)
    builder = PlanBuilder(0, 0, MOE, ConstantPerf(), moe_template(False, tp), tp, 2,
                          expert_routing=expert_router("RR"), weights=weights)
    plain = PlanBuilder(0, 0, MOE, ConstantPerf(), moe_template(False, tp), tp, 2,
                        expert_routing=expert_router("RR"))
    request = Request(rid=0, arrival=0, prompt=tokens, output=2)
    batch = Batch(0, [request], [tokens], [False])
    (plan,) = builder.plans(batch)
    fetches = [op for op, n in plan.ops() for _ in range(n) if op.kind == FETCH]
    # RR: one token activates experts 0 and 1; six tokens all four (two per rank at TP2).
    assert [op.nbytes for op in fetches] == [active * 3 * 256 * 512 * 2] * MOE.num_layers
    names = [op.name for op in plan.groups[1].ops]
    assert names.index("expert.weights") == names.index("gate") + 1
    fabric = StubFabric(collective=0, memory=50_000)
    (base,) = plain.plans(batch)
    # Each layer's experts wait for a fetch issued when its gate has run: 50,000 ns per rank.
    assert ClosedFormPricer({0: fabric}).price(plan, 0).duration_ns == \
        ClosedFormPricer({0: fabric}).price(base, 0).duration_ns + \
        MOE.num_layers * tp * 50_000


def roofline_instances(cfg: dict, tmp_path: Path, local: bool = False) -> list:
    path = write_json(tmp_path / "c.json", cfg)
    options = RunOptions(cluster_config=path, dataset=tmp_path / "x",
                         perf_models=PERF_MODELS_DIR, model_configs=MODEL_CONFIG_DIR,
                         local_offloading=local)
    return build_instances(load_cluster_config(path), options, lambda msg: None)


def prefill(prompt: int) -> Batch:
    return Batch(0, [Request(rid=0, arrival=0, prompt=prompt, output=2)], [prompt], [False])


def test_local_offloading_times_device_memory_reads(tmp_path):
    (plain,) = roofline_instances(SINGLE, tmp_path)
    (local,) = roofline_instances(SINGLE, tmp_path, local=True)
    batch = prefill(64)
    (base_plan,) = plain.plans.plans(batch)
    (plan,) = local.plans.plans(batch)
    assert not base_plan.weight_loads and plan.weight_loads
    # The embedding waits for its 1,050,673,152 B read at 768 B/ns (no queue); later reads
    # are in long before their operators run.
    base = ClosedFormPricer({0: plain.fabric}).price(base_plan, 0).duration_ns
    released = plain.fabric.memory_ns("host", 64 * 2 * 2)
    assert ClosedFormPricer({0: local.fabric}).price(plan, 0).duration_ns == \
        base + 1_050_673_152 // 768 - released
    assert ReplayPricer({0: local.fabric}, 1).price(plan, 0).duration_ns == \
        base + 1_050_673_152 // 768 - released


def test_two_instances_on_one_cxl_device_queue_and_the_pricers_agree(tmp_path):
    cfg = with_placement({"default": {"weights": "cxl:1"}}, CXL)
    node = cfg["nodes"][0]
    node["instances"].append(json.loads(json.dumps(node["instances"][0])))
    node["num_instances"] = 2
    first, second = roofline_instances(cfg, tmp_path)
    assert first.budget.weight_bytes == 0
    (plan_a,) = first.plans.plans(prefill(32))
    (plan_b,) = second.plans.plans(prefill(48))
    fabrics = {0: first.fabric, 1: second.fabric}
    closed, replay = ClosedFormPricer(fabrics), ReplayPricer(fabrics, 1)
    alone = ClosedFormPricer(fabrics).price(plan_b, 1000).duration_ns
    times = [[p.price(plan_a, 0).duration_ns, p.price(plan_b, 1000).duration_ns]
             for p in (closed, replay)]
    assert times[0] == times[1]
    # All 16 GB of weights stream from CXL device 1 every iteration (~268 ms at 60 GB/s) ...
    busy = sum(first.fabric.memory_ns(op.target, op.nbytes) for op, n in plan_a.ops()
               for _ in range(n) if op.kind == PREFETCH)
    accesses = 3 + 32 * 9  # embedding, final norm, lm_head and nine matrices or norms a block
    assert 16_060_522_496 // 60 <= busy <= 16_060_522_496 // 60 + accesses * 251
    assert times[0][0] > busy
    # ... and the second instance, issuing 1,000 ns later, streams only once the first is done.
    assert times[0][1] == alone + busy - 1000


# --- outputs: device memory per window ----------------------------------------------------

def test_device_memory_is_reported_per_window(tmp_path):
    import re

    cfg = with_placement({"blocks": [{"blocks": "16-31", "weights": "cpu"}]})
    lines = [json.dumps({"input_toks": 200, "output_toks": 60, "arrival_time_ns": k * 10**7})
             for k in range(8)]
    metrics = tmp_path / "m.json"
    done = run_main(["--cluster-config", str(write_json(tmp_path / "c.json", cfg)),
                     "--dataset", str(write_trace(tmp_path / "t.jsonl", lines)),
                     "--log-interval", "0.05", "--metrics-json", str(metrics)])
    assert done.returncode == 0, done.stderr
    memory = json.loads(metrics.read_text())["instances"]["0"]["device_memory"]
    # Blocks 16-31 (16 x 436,224,000 B) live in host memory and are not counted.
    assert memory["weight_bytes"] == 16_060_522_496 - 16 * 436_224_000
    printed = [float(m) for m in re.findall(r"Each NPU Memory Usage ([\d.]+) MB", done.stdout)]
    assert len(printed) == len(memory["kv_bytes_per_window"]) >= 2
    assert printed == [round((memory["weight_bytes"] + kv) / 2**20, 2)
                       for kv in memory["kv_bytes_per_window"]]
    assert memory["peak_kv_bytes"] == max(memory["kv_bytes_per_window"]) > 0
    assert f"Weights per NPU of instance 0 (MB):{' ' * 33}8660.26" in done.stdout


def test_the_external_binary_refuses_weight_loads(tmp_path):
    binary = tmp_path / "astra"
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    out = tmp_path / "out.csv"
    done = run_main(["--dataset", "dataset/example_trace.jsonl", "--enable-local-offloading",
                     "--network-backend", "external", "--astra-sim-bin", str(binary),
                     "--output", str(out)])
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: instance(s) [0] load weights every iteration")
    assert not out.exists()


def test_exported_graphs_replay_to_the_priced_time(tmp_path):
    import subprocess
    import sys

    from inference_serving.chakra_graph import ChakraExporter
    from tests.conftest import REPO

    cfg = json.loads((REPO / "cluster_config/single_node_cxl_instance.json").read_text())
    cfg["nodes"][0]["instances"][0]["npu_num"] = 2  # TP2: joint host and CXL accesses
    (inst,) = roofline_instances(cfg, tmp_path)
    batch = prefill(100)
    prefix = ChakraExporter(1, tmp_path / "x", "casys").write(inst, batch)
    done = subprocess.run([sys.executable, "-m", "astra_sim", "--workload", str(prefix),
                           "--network", str(prefix.parent / "network.yml"),
                           "--system", str(prefix.parent / "system.json"),
                           "--memory", str(prefix.parent / "memory.json"),
                           "--comm-group", str(prefix.parent / "comm_group.json"),
                           "--dialect", "casys"], capture_output=True, text=True, cwd=REPO,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    (plan,) = inst.plans.plans(batch)
    expected = ClosedFormPricer({0: inst.fabric}).price(plan, 0).duration_ns
    assert done.stdout.splitlines()[0].startswith(f"sys[0] finished, {expected} cycles")


def test_host_placed_weights_shrink_the_swap_space(tmp_path):
    cfg = with_placement({"layers": {"lm_head": {"weights": "cpu"}}})
    path = write_json(tmp_path / "c.json", cfg)
    options = RunOptions(cluster_config=path, dataset=tmp_path / "x", scheduler="legacy",
                         perf_models=PERF_MODELS_DIR, model_configs=MODEL_CONFIG_DIR)
    (inst,) = build_instances(load_cluster_config(path), options, lambda msg: None)
    # 128 GiB of host memory less lm_head's 1,050,673,152 B.
    assert inst.kv.swap.capacity_bytes == 128 * GIB - 1_050_673_152
