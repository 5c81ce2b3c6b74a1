"""PIM attention offload and sub-batch interleaving (serving.md §10, formats.md §5)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from astra_sim.engine import Engine, _Replay
from inference_serving.chakra_graph import engine_setup, plan_graphs
from inference_serving.cluster_config import cluster_from_dict
from inference_serving.fabric import instance_fabric
from inference_serving.pim_device import PimDevice, load_pim_device, parse_ini
from inference_serving.pim_offload import PimSetup, pim_setup, place, split_batch
from inference_serving.plan_builder import PlanBuilder
from inference_serving.pricers.base import plan_usage
from inference_serving.pricers.closed_form import ClosedFormPricer
from inference_serving.pricers.replay import ReplayPricer
from inference_serving.request import Request
from inference_serving.scheduler.base import Batch
from llmsim_core.errors import InputError
from llmsim_core.model_config import ModelConfig
from llmsim_core.op_templates import dense_template
from tests.conftest import DATA, REPO, needs_data
from tests.test_cli_errors import SINGLE, run_main, write_json, write_trace

LLAMA_8B = ModelConfig("meta-llama/Llama-3.1-8B", hidden_size=4096, num_layers=32, num_heads=32,
                       num_kv_heads=8, intermediate_size=14336, vocab_size=128256,
                       max_position_embeddings=131072)
GIB = 1 << 30
SPEC_TABLE = {  # formats.md §5: channel GB, GB/s, latency ns, idle / peak W
    "DDR4_8GB_3200_pim": (8, 25.6, 13.86, 0.623, 3.803),
    "HBM2_1GB_2000_pim": (1, 32.0, 14.0, 0.160, 0.760),
    "LPDDR4X_2GB_4266_pim": (2, 8.532, 16.848, 0.070, 0.771),
    "LPDDR5_2GB_6400_pim": (2, 12.8, 10.625, 0.071, 0.877),
}


def _derived(device: PimDevice) -> tuple:
    return (device.channel_bytes / GIB, round(device.channel_bw_gbps, 6),
            round(device.latency_ns, 6), device.idle_power_w, device.peak_power_w)


@needs_data
def test_the_hbm2_device_file_derives_the_published_channel():
    device = load_pim_device("HBM2_1GB_2000_pim", DATA / "pim_config", "test")
    assert _derived(device) == SPEC_TABLE["HBM2_1GB_2000_pim"]
    assert (device.slope_ns_per_token, device.intercept_ns) == (242.0548, 14513.5015)
    assert device.channels(256 * GIB) == 256  # figure 10: 256 GB of host memory


@pytest.mark.parametrize("name", sorted(SPEC_TABLE))
def test_bundled_device_files_derive_the_spec_table(name):
    assert _derived(load_pim_device(name, REPO / "pim_config", "test")) == SPEC_TABLE[name]


def test_ini_reader_skips_sections_comments_and_types_values():
    values = parse_ini("[a]\n; note\nx = 3 # inline\ny = 2.5\nz = HBM\n\n", "t.ini")
    assert values == {"x": 3, "y": 2.5, "z": "HBM"}


def _fig10_setup(interleave: bool = False) -> PimSetup:
    device = PimDevice("HBM2_1GB_2000_pim", GIB, 32.0, 14.0, 0.16, 0.76, 242.0548, 14513.5015)
    return pim_setup(device, 256, LLAMA_8B, tp=1, fp=2, interleave=interleave)


def test_one_pim_op_time_from_the_hbm2_device():
    setup = _fig10_setup()
    # S = min(256 channels, 8 KV heads); q + k + v + output of one token, fp16, over S.
    assert setup.split == 8
    assert setup.op_bytes == (4096 + 1024 + 1024 + 4096) * 2 // 8 == 2560
    # (242.0548 · 1000 + 14513.5015) / 8 = 32071.04 ns of PIM compute per op.
    work = place([1000], setup)
    assert work.channels.tolist() == list(range(8)) and set(work.ns.tolist()) == {32071}
    # On its channel: + CL·tCK = 14 ns + 2560 B / (256 × 32 GB/s) = 0 ns (truncated).
    fabric, _ = _fabric(256, 256 * 32, 14, channels=256)
    assert fabric.memory_ns("host", 2560) == 14
    builder = _builder(setup, layers=1, op_ns=10)
    plan = builder.plans(_batch([1000]))[0]
    cost = ClosedFormPricer({0: fabric}).price(plan, 0)
    # input load (14 + 0) → embedding, 5 pre-attention ops, PIM op 32085, 6 post-attention
    # ops, final norm, lm_head (10 ns each) → output store (14).
    assert cost.duration_ns == 14 + 10 + 50 + 32071 + 14 + 60 + 20 + 14
    usage = plan_usage(plan, fabric)
    assert usage.pim_busy_ns == {0: 8 * 32085}
    assert usage.tier_bytes["pim:0"] == 8 * 2560


def test_s_way_placement_on_the_least_loaded_channel():
    device = PimDevice("d", GIB, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, fit_is_published=False)
    # C = 3, S = 2; longest first: 5 → ch0, ch1; 4 → ch2 (4), then ch2 again (4 < 5);
    # 3 → ch0 (5), ch1 (5, the lower index wins over ch2's 8).
    work = place([3, 5, 4], PimSetup(device, channels=3, split=2, op_bytes=0))
    assert work.channels.tolist() == [0, 1, 2, 2, 0, 1]
    assert work.ns.tolist() == [2, 2, 2, 2, 1, 1]  # len / S, truncated
    assert work.used.tolist() == [0, 1, 2]
    assert work.used_ns.tolist() == [3, 3, 4] and work.used_ops.tolist() == [2, 2, 2]
    work = place([10, 30, 20], PimSetup(device, channels=4, split=2, op_bytes=0))
    assert work.channels.tolist() == [0, 1, 2, 3, 2, 3]


def test_sub_batches_are_load_balanced_then_in_arrival_order():
    # loads: prefill 100, decodes 50, 40, 30, 20 → B1 {100, 20}, B2 {50, 40, 30}.
    parts = split_batch([20, 100, 40, 50, 30], arrivals=[5, 4, 3, 2, 1])
    assert parts == ([1, 0], [4, 3, 2])


# --- a two-layer hand-derived example ------------------------------------------------------

class _FlatPerf:
    """Every operator costs `op_ns`; attention is never asked for (no prefills)."""

    def __init__(self, op_ns: int) -> None:
        self.op_ns = op_ns

    def layer_ns(self, op: str, tokens: int) -> int:
        return self.op_ns

    def attention_ns(self, batch) -> int:
        raise AssertionError("decode attention must not run on the NPU")


def _fabric(mem_gb: int, bw: float, latency: float, channels: int = 0):
    cfg = json.loads(json.dumps(SINGLE))
    cfg["nodes"][0]["cpu_mem"].update(mem_size=mem_gb, mem_bw=bw, mem_latency=latency)
    cluster = cluster_from_dict(cfg, "c.json")
    spec = cluster.instances[0]
    fabric = instance_fabric(cluster, spec, "analytical")
    fabric.pim_channels = channels
    return fabric, cluster


def _builder(setup: PimSetup, layers: int, op_ns: int) -> PlanBuilder:
    model = ModelConfig("tiny", hidden_size=64, num_layers=layers, num_heads=4, num_kv_heads=2,
                        intermediate_size=128, vocab_size=100, max_position_embeddings=4096)
    return PlanBuilder(0, 0, model, _FlatPerf(op_ns), dense_template(False, 1), tp=1, fp=2,
                       pim=setup)


def _batch(lengths: list[int]) -> Batch:
    requests = []
    for i, length in enumerate(lengths):
        request = Request(rid=i, arrival=i, prompt=length - 1, output=8)
        request.num_tokens = request.computed = length
        requests.append(request)
    return Batch(0, requests, [1] * len(lengths), [True] * len(lengths))


def _timed_replay(plan, fabric) -> tuple[int, dict[str, list[tuple[int, int]]]]:
    """Engine replay of the plan's graphs recording every node's (issue, end) by name."""
    config, memory = engine_setup(fabric, 1, 1)
    engine = Engine(config, memory)
    graphs = plan_graphs(plan, fabric, stage_links=False)
    names = {node.id: node.name for node in graphs[0]}
    issued: dict[int, int] = {}
    times: dict[str, list[tuple[int, int]]] = {}
    start_node, complete = _Replay.start_node, _Replay.complete

    def start(self, npu, node, resource, now):
        issued[node.id] = now
        start_node(self, npu, node, resource, now)

    def done(self, npu, node_id, time, resource):
        times.setdefault(names[node_id], []).append((issued[node_id], time))
        complete(self, npu, node_id, time, resource)

    _Replay.start_node, _Replay.complete = start, done
    try:
        result = engine.replay(graphs, 0)
    finally:
        _Replay.start_node, _Replay.complete = start_node, complete
    return result.finish_ns[0], times


def _two_layer_case(interleave: bool):
    device = PimDevice("d", GIB, 1.0, 0.0, 0.0, 0.0, 4.0, 0.0, fit_is_published=False)
    setup = PimSetup(device, channels=2, split=2, op_bytes=0, interleave=interleave)
    fabric, _ = _fabric(256, 1000, 5, channels=2)  # a host access: 5 ns + bytes // 1000 = 0
    plan = _builder(setup, layers=2, op_ns=10).plans(_batch([100, 60]))[0]
    return plan, fabric


def test_sub_batch_interleaving_two_layer_timeline():
    """Two decodes (len 100, 60), C = S = 2, slope 4 ns/token: a PIM op costs 4·len/2 ns
    + 5 ns of host latency, so the 100-token decode's ops take 205 ns and the 60-token one's
    125 ns; every NPU operator takes 10 ns (pre-attention 5 ops, post-attention 6).

    B1 = {100}, B2 = {60}. t = 5 after the input load. B1: embedding 5–15, pre 15–65, PIM
    group launched at 65 → 270 on both channels. B2: embedding 65–75, pre 75–125, PIM queued
    behind B1's → 270–395. Layer 0 → 1: B1 waits to 270, post 270–330, pre 330–380, PIM
    395–600; B2 waits to 395, post 395–455, pre 455–505, PIM 600–725. Last layer: B1 waits to
    600, post 600–660, final norm 660–670, lm_head 670–680; B2 waits to 725, post 725–785,
    final norm 785–795, lm_head 795–805; output store 805–810.
    """
    plan, fabric = _two_layer_case(interleave=True)
    finish, times = _timed_replay(plan, fabric)
    assert finish == 810
    assert times["embedding"] == [(5, 15), (65, 75)]
    assert times["rope"] == [(55, 65), (115, 125)]
    assert times["layer0.rope"] == [(370, 380), (495, 505)]
    assert times["o_proj"] == [(600, 610), (725, 735)]
    assert times["layer0.o_proj"] == [(270, 280), (395, 405)]
    assert times["lm_head"] == [(670, 680), (795, 805)]
    # The PIM ops: issued after their sub-batch's rope, served one after another per channel.
    assert sorted(times["attn_pim.0"] + times["attn_pim.1"]) == [
        (65, 270), (65, 270), (125, 395), (125, 395)]
    assert sorted(times["layer0.attn_pim.0"] + times["layer0.attn_pim.1"]) == [
        (380, 600), (380, 600), (505, 725), (505, 725)]
    assert times["output_store"] == [(805, 810)]
    # The closed form's PIM walk gives the same iteration time.
    assert ClosedFormPricer({0: fabric}).price(plan, 0).duration_ns == 810


def test_without_interleaving_the_same_batch_is_slower():
    """One group per layer: both decodes on both channels (205 + 125 = 330 ns each):
    5 → 15 → 65, PIM 65–395, post 395–455, pre 455–505, PIM 505–835, post 835–895, final
    895–915, store 915–920."""
    plan, fabric = _two_layer_case(interleave=False)
    finish, times = _timed_replay(plan, fabric)
    assert finish == 920
    assert times["layer0.o_proj"] == [(395, 405)] and times["layer1.o_proj"] == [(835, 845)]
    assert ClosedFormPricer({0: fabric}).price(plan, 0).duration_ns == 920
    assert ReplayPricer({0: fabric}, 1).price(plan, 0).duration_ns == 920


def test_walk_equals_engine_replay_on_a_real_sized_batch():
    setup = _fig10_setup(interleave=True)
    fabric, _ = _fabric(256, 256 * 32, 14, channels=256)
    builder = _builder(setup, layers=3, op_ns=2000)
    plan = builder.plans(_batch([300 + 7 * i for i in range(40)]))[0]
    walked = ClosedFormPricer({0: fabric}).price(plan, 1000).duration_ns
    assert walked == ReplayPricer({0: fabric}, 1).price(plan, 1000).duration_ns


# --- command line --------------------------------------------------------------------------

def _pim_cluster(tmp: Path, pim_config: object = "HBM2_1GB_2000_pim", **instance) -> Path:
    cfg = json.loads(json.dumps(SINGLE))
    cpu = cfg["nodes"][0]["cpu_mem"]
    cpu.pop("mem_bw")
    cpu.pop("mem_latency")
    cpu["pim_config"] = pim_config
    cfg["nodes"][0]["instances"][0].update(instance)
    return write_json(tmp / "pim.json", cfg)


def _device_dir(tmp: Path, text: str | bytes) -> Path:
    root = tmp / "pim"
    root.mkdir()
    target = root / "HBM2_1GB_2000_pim.ini"
    target.write_bytes(text if isinstance(text, bytes) else text.encode())
    return root


HBM2 = (REPO / "pim_config/HBM2_1GB_2000_pim.ini").read_text()
OFFLOAD = "--enable-attn-offloading"


def case_offloading_without_pim_config(tmp):
    return [OFFLOAD], "needs a PIM device on every node"


def case_interleaving_without_offloading(tmp):
    return ["--enable-sub-batch-interleaving"], "needs --enable-attn-offloading"


def case_pim_config_names_a_missing_file(tmp):
    return ["--cluster-config", str(_pim_cluster(tmp, "HBM3_nope")), OFFLOAD], "not found"


def case_pim_config_not_a_string(tmp):
    return ["--cluster-config", str(_pim_cluster(tmp, 7)), OFFLOAD], "cpu_mem.pim_config"


def case_malformed_device_file(tmp):
    root = _device_dir(tmp, HBM2 + "\nthis line has no value\n")
    return ["--cluster-config", str(_pim_cluster(tmp)), OFFLOAD, "--pim-configs", str(root)], \
        "is not 'key = value'"


def case_device_file_missing_a_key(tmp):
    root = _device_dir(tmp, HBM2.replace("data_rate", "; data_rate"))
    return ["--cluster-config", str(_pim_cluster(tmp)), OFFLOAD, "--pim-configs", str(root)], \
        "missing key 'data_rate'"


def case_device_file_non_finite(tmp):
    root = _device_dir(tmp, HBM2.replace("CL = 14", "CL = 1e999."))
    return ["--cluster-config", str(_pim_cluster(tmp)), OFFLOAD, "--pim-configs", str(root)], \
        "'CL' must be an integer in [1, 1000000] cycles"


def case_device_file_not_utf8(tmp):
    root = _device_dir(tmp, HBM2.encode() + b"; \xff\xfe\n")
    return ["--cluster-config", str(_pim_cluster(tmp)), OFFLOAD, "--pim-configs", str(root)], \
        "not UTF-8"


def case_unsupported_head_shape(tmp):
    cluster = _pim_cluster(tmp, model_name="meta-llama/Llama-3.2-1B")
    return ["--cluster-config", str(cluster), OFFLOAD], "head dim 128, not"


def case_offloading_with_tensor_parallelism(tmp):
    return ["--cluster-config", str(_pim_cluster(tmp, npu_num=2)), OFFLOAD], "TP 1, PP 1"


def case_host_memory_without_bandwidth_and_no_offloading(tmp):
    return ["--cluster-config", str(_pim_cluster(tmp))], "cpu_mem has no mem_bw"


def case_pim_configs_without_offloading(tmp):
    return ["--pim-configs", str(tmp)], "--pim-configs has no effect"


def case_upstream_chakra_export_of_pim_nodes(tmp):
    return [OFFLOAD, "--export-chakra", str(tmp / "et"), "--chakra-dialect", "upstream"], \
        "no PIM nodes"


def case_pim_defects_without_offloading(tmp):
    return ["--compat-pim-defects"], "--compat-pim-defects has no effect"


def case_offloading_with_an_external_binary(tmp):
    return ["--cluster-config", str(_pim_cluster(tmp)), OFFLOAD, "--network-backend",
            "external", "--astra-sim-bin", "/bin/true"], "priced in process"


def case_offloading_with_local_weight_reads(tmp):
    return ["--cluster-config", str(_pim_cluster(tmp)), OFFLOAD, "--enable-local-offloading"], \
        "weights read during the iteration"


CASES = [v for k, v in sorted(globals().items()) if k.startswith("case_")]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__[5:])
def test_bad_pim_input_gives_one_error_line_and_exit_2(tmp_path, case):
    args, needle = case(tmp_path)
    trace = write_trace(tmp_path / "ok.jsonl",
                        [json.dumps({"input_toks": 8, "output_toks": 4, "arrival_time_ns": 0})])
    done = run_main(["--dataset", str(trace), "--output", str(tmp_path / "out.csv"), *args])
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert needle in lines[0]
    assert not (tmp_path / "out.csv").exists()


def test_device_loading_refuses_a_path_as_name(tmp_path):
    with pytest.raises(InputError, match="not a file base name"):
        load_pim_device("../HBM2_1GB_2000_pim", REPO / "pim_config", "k")


def _rows(path: Path) -> dict:
    with path.open() as handle:
        return {r["request id"]: r for r in csv.DictReader(handle)}


@needs_data
@pytest.mark.parametrize("name,flags,bound", [
    ("pim", [OFFLOAD, "--log-interval", "1"], 0.04),
    ("pim_sub_batch", [OFFLOAD, "--enable-sub-batch-interleaving"], 0.01),
])
def test_example_runs_stay_close_to_the_existing_simulator(tmp_path, name, flags, bound):
    """The existing simulator's PIM examples: ours differs only through the defects it does
    not reproduce (decode attention charged on the NPU beside PIM for mixed batches; S× too
    little PIM work under SBI): each request's latency within `bound`, never identical."""
    out = tmp_path / "out.csv"
    done = run_main(["--cluster-config", str(DATA / "cluster_config/single_node_pim_instance.json"),
                     "--dataset", str(DATA / "datasets/example_trace.jsonl"),
                     "--perf-models", str(DATA / "perf_models"), "--num-req", "10",
                     "--output", str(out), "--compat", "artifact", "--scheduler", "legacy",
                     *flags])
    assert done.returncode == 0, done.stderr
    ours, ref = _rows(out), _rows(DATA / f"reference_sim/examples/example_{name}_run.csv")
    assert ours.keys() == ref.keys()
    errors = [abs(int(ours[r]["latency"]) / int(row["latency"]) - 1) for r, row in ref.items()]
    assert max(errors) < bound and min(errors) > 0


@needs_data
@pytest.mark.parametrize("name,flags,bound", [
    ("pim", [OFFLOAD, "--log-interval", "1"], 0.0),
    ("pim_sub_batch", [OFFLOAD, "--enable-sub-batch-interleaving"], 1e-4),
])
def test_with_the_defects_reproduced_the_examples_match_the_existing_simulator(
        tmp_path, name, flags, bound):
    """`--compat-pim-defects`: the PIM example to the nanosecond; the SBI one within 0.01 %
    (its sub-batch-2 attention op tagged as sub-batch 1 is not reproduced)."""
    out = tmp_path / "out.csv"
    done = run_main(["--cluster-config", str(DATA / "cluster_config/single_node_pim_instance.json"),
                     "--dataset", str(DATA / "datasets/example_trace.jsonl"),
                     "--perf-models", str(DATA / "perf_models"), "--num-req", "10",
                     "--output", str(out), "--compat", "artifact", "--scheduler", "legacy",
                     "--compat-pim-defects", *flags])
    assert done.returncode == 0, done.stderr
    ours, ref = _rows(out), _rows(DATA / f"reference_sim/examples/example_{name}_run.csv")
    errors = [abs(int(ours[r]["latency"]) / int(row["latency"]) - 1) for r, row in ref.items()]
    assert max(errors) <= bound
    if bound == 0:
        assert all(ours[r]["ITL"] == row["ITL"] for r, row in ref.items())


def _generation_series(path: Path) -> list[float]:
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    key = next(k for k in rows[0] if "generation" in k.lower())
    return [float(r[key]) for r in rows]


@needs_data
def test_figure_10_pim_beats_gpu_only_and_sbi_beats_pim_at_full_batch(tmp_path):
    series, makespan, joules = {}, {}, {}
    for name, config, flags in (
            ("gpu", "gpu_only_config.json", []),
            ("pim", "pim_config.json", [OFFLOAD]),
            ("sbi", "pim_config.json", [OFFLOAD, "--enable-sub-batch-interleaving"])):
        out = tmp_path / f"{name}.csv"
        done = run_main(["--cluster-config", str(DATA / "artifact_configs/figure_10" / config),
                         "--dataset", str(DATA / "datasets/fixed_in128_out512_req256_rate10.jsonl"),
                         "--perf-models", str(DATA / "perf_models"), "--num-req", "256",
                         "--scheduler", "legacy", "--log-interval", "1", "--quiet",
                         "--output", str(out), *flags])
        assert done.returncode == 0, done.stderr
        rows = _rows(out)
        assert len(rows) == 256
        makespan[name] = max(int(r["end_time"]) for r in rows.values())
        joules[name] = float(next(line.split()[-1] for line in done.stdout.splitlines()
                                  if line.startswith("Energy per generated token")))
        series[name] = _generation_series(out.with_name(f"{name}_throughput.csv"))
    assert makespan["pim"] < 0.9 * makespan["gpu"]  # the same tokens in less time
    assert joules["pim"] < 0.9 * joules["gpu"]  # and less energy per token (PIM channels on)
    # With all 256 requests decoding (26–35 s), SBI's overlap wins over plain PIM.
    full = {name: sum(values[26:35]) for name, values in series.items()}
    assert full["sbi"] > full["pim"] > full["gpu"]


def test_grouped_placement_equals_one_by_one_placement():
    """When S divides C the placement runs per group of S channels; same channels as the
    one-placement-at-a-time greedy."""
    from inference_serving.pim_offload import _place_in_groups, _place_one_by_one
    lengths = sorted([(i * 7919) % 613 + 1 for i in range(300)] + [50] * 20, reverse=True)
    for channels, split in ((256, 8), (64, 8), (16, 4), (8, 8), (6, 2)):
        assert _place_in_groups(lengths, channels // split, split).tolist() == \
            _place_one_by_one(lengths, channels, split).tolist()


@needs_data
@pytest.mark.parametrize("flags", [[OFFLOAD], [OFFLOAD, "--enable-sub-batch-interleaving"]])
def test_replay_pricer_and_closed_form_agree_on_whole_runs(tmp_path, flags):
    outputs = []
    for pricer in ("closed-form", "replay"):
        out = tmp_path / f"{pricer}.csv"
        done = run_main(["--cluster-config",
                         str(DATA / "cluster_config/single_node_pim_instance.json"),
                         "--dataset", str(DATA / "datasets/example_trace.jsonl"),
                         "--perf-models", str(DATA / "perf_models"), "--num-req", "10",
                         "--output", str(out), "--pricer", pricer, *flags])
        assert done.returncode == 0, done.stderr
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def test_reproduced_sbi_defect_places_each_decode_once_at_a_fraction_of_its_time():
    setup = _fig10_setup(interleave=True)
    work = place([1000, 500], setup, copies=1)
    # One op per decode (not S = 8), still (slope · len + intercept) / 8 ns each.
    assert work.channels.tolist() == [0, 1]
    assert work.ns.tolist() == [32071, int((242.0548 * 500 + 14513.5015) / 8)]
