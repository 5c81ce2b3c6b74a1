"""Hostile input to the newer features (PIM device files, placement, CXL, power, prefix caching,
vLLM defaults, current-layout profiles, sweep, bench and power CLIs): one `error:` line, exit
status 2, no output written, no input touched; accepted no-op settings draw one warning line.

Entry points run in process (each case is a `main(argv)` call), which keeps the file fast."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from evaluation import bench, sweep
from inference_serving import cli
from llm_profile import power
from tests.conftest import REPO
from tests.test_cli_errors import SINGLE, write_json
from tests.test_current_formats import META, write_profile

TRACE = REPO / "dataset" / "example_trace.jsonl"
HBM2 = (REPO / "pim_config" / "HBM2_1GB_2000_pim.ini").read_text()
CXL = json.loads((REPO / "cluster_config" / "single_node_cxl_instance.json").read_text())
POWER = json.loads((REPO / "cluster_config" / "single_node_power_instance.json").read_text())
TP2 = json.loads((REPO / "cluster_config" / "single_node_tp2_instance.json").read_text())
SPEC = """slo: {ttft_ms: 2000}
workload: {num_requests: 2, input: "fixed:32", output: "fixed:4"}
rates: [5]
clusters:
  - {name: a, model: meta-llama/Llama-3.1-8B, hardware: A6000}
options: {perf_model: roofline}
"""
SAMPLES = "time_s,power_w,phase\n0,30,before\n0.1,300,during\n0.2,90,after\n"


def copy(obj: dict) -> dict:
    return json.loads(json.dumps(obj))


def run(entry: Callable[[list[str]], int], argv: list[str], capsys) -> tuple[int, list[str]]:
    """Exit status and stderr lines of one in-process run."""
    try:
        status = entry(argv)
    except SystemExit as exc:  # argparse
        status = exc.code
    return status, capsys.readouterr().err.strip().splitlines()


def simulate_args(tmp: Path, *args: object, cfg: dict | None = None,
                  dataset: Path = TRACE) -> list[str]:
    cluster = write_json(tmp / "c.json", cfg if cfg is not None else copy(SINGLE))
    return ["--no-progress", "--quiet", "--cluster-config", str(cluster), "--dataset",
            str(dataset), "--num-req", "3", "--output", str(tmp / "out.csv"), *map(str, args)]


def pim(tmp: Path, ini: str | None = None, cfg: dict | None = None, *args: object) -> list[str]:
    """--enable-attn-offloading with the HBM2 device file (or `ini` in its place)."""
    folder = tmp / "pim"
    folder.mkdir()
    (folder / "HBM2_1GB_2000_pim.ini").write_text(HBM2 if ini is None else ini)
    cfg = copy(SINGLE) if cfg is None else cfg
    for node in cfg["nodes"]:
        node["cpu_mem"]["pim_config"] = "HBM2_1GB_2000_pim"
    return simulate_args(tmp, "--enable-attn-offloading", "--pim-configs", folder, *args,
                         cfg=cfg)


def ini_with(key: str, value: str) -> str:
    return re.sub(rf"(?m)^{key}\s*=.*$", f"{key} = {value}", HBM2)


def with_placement(placement: dict) -> dict:
    cfg = copy(CXL)
    cfg["nodes"][0]["instances"][0]["placement"] = placement
    return cfg


def trace_with(tmp: Path, ids: object) -> Path:
    line = {"input_toks": 4, "output_toks": 2, "arrival_time_ns": 0, "input_tok_ids": ids}
    path = tmp / "ids.jsonl"
    path.write_text(json.dumps(line) + "\n")
    return path


def profile_with(tmp: Path, change: tuple[str, str]) -> list[str]:
    variant = write_profile(tmp / "perf")
    (variant / "meta.yaml").write_text(META.replace(*change))
    cfg = copy(SINGLE)
    inst = cfg["nodes"][0]["instances"][0]
    del inst["npu_num"], inst["npu_group"]
    inst.update(num_npus=1, tp_size=1)
    return simulate_args(tmp, "--perf-models", tmp / "perf", cfg=cfg)


def sweep_args(tmp: Path, text: str | bytes, *extra: object) -> list[str]:
    spec = tmp / "s.yaml"
    spec.write_bytes(text if isinstance(text, bytes) else text.encode())
    return [str(spec), "--jobs", "1", "--no-plot", "--out", str(tmp / "rows.csv"),
            *map(str, extra)]


def bench_folder(tmp: Path, meta: str) -> list[str]:
    folder = tmp / "vllm_bench" / "A6000" / "Llama"
    (folder / "vllm").mkdir(parents=True)
    write_json(folder / "config.json", copy(SINGLE))
    (folder / "vllm" / "meta.json").write_text(meta)
    return [str(folder)]


META_JSON = '{"dataset_path": "w.jsonl", "num_requests": 2, "engine_kwargs": %s}'


def samples(tmp: Path, text: str | bytes = SAMPLES) -> Path:
    path = tmp / "s.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


MAIN, SWEEP, BENCH, POWER_CLI = cli.main, sweep.main, bench.main, power.main
# name: (entry, argv maker, expected text of the error line)
CASES: dict[str, tuple[Callable, Callable[[Path], list[str]], str]] = {
    # PIM device files: bounded, typed, no duplicates or misspelt extension keys.
    "pim_ini_400_digit_rows": (MAIN, lambda t: pim(t, ini_with("rows", "9" * 400)),
                               "'rows' must be an integer in [1, 2147483647]"),
    "pim_ini_fractional_bankgroups": (MAIN, lambda t: pim(t, ini_with("bankgroups", "0.5")),
                                      "'bankgroups' must be an integer"),
    "pim_ini_latency_of_centuries": (MAIN, lambda t: pim(t, ini_with("CL", "1.0e300")),
                                     "'CL' must be an integer in [1, 1000000] cycles"),
    "pim_ini_fractional_cl": (MAIN, lambda t: pim(t, ini_with("CL", "3.5")),
                              "'CL' must be an integer in [1, 1000000] cycles"),
    "pim_ini_cl_in_fullwidth_digits": (MAIN, lambda t: pim(t, ini_with("CL", "\uff11\uff14")),
                                       "'CL' must be an integer in [1, 1000000] cycles"),
    "pim_ini_vanishing_data_rate": (MAIN, lambda t: pim(t, ini_with("data_rate", "1.0e-300")),
                                    "channel bandwidth"),
    "pim_ini_bus_not_whole_devices": (MAIN, lambda t: pim(t, ini_with("device_width", "96")),
                                      "bus_width 128 is not a multiple of device_width 96"),
    "pim_ini_peak_below_idle": (MAIN, lambda t: pim(t, ini_with("peak_power", "10")),
                                "peak_power 10 mW is below idle_power 160 mW"),
    "pim_ini_duplicate_key": (MAIN, lambda t: pim(t, HBM2 + "[extra]\nidle_power = 9999\n"),
                              "key 'idle_power' is set twice"),
    "pim_ini_misspelt_fit_key": (MAIN, lambda t: pim(
        t, HBM2 + "pim_attn_slope_ns_per_tokens = 5.0\n"), "unknown extension key"),
    "pim_ini_huge_slope": (MAIN, lambda t: pim(
        t, HBM2 + "pim_attn_slope_ns_per_token = 1.0e300\npim_attn_intercept_ns = 1.0\n"),
        "'pim_attn_slope_ns_per_token' must be a number in [0, 1e+06]"),
    "pim_billion_channels": (MAIN, lambda t: pim(t, None, _cpu_mem_size(1e9)),
                             "more than the 65536"),
    # A late set-up error is not preceded by the PIM warning (or any other held line).
    "pim_warning_held_before_error": (MAIN, lambda t: pim(t, None, copy(TP2)),
                                      "one NPU per instance"),
    "power_dimm_missing_note_held": (MAIN, lambda t: simulate_args(
        t, cfg=_power_without("dimm_size")), "power.dram.dimm_size"),
    "power_dimm_of_no_size": (MAIN, lambda t: simulate_args(t, cfg=_power_dimm(1e-300)),
                              "'dimm_size' must be a number in [0.001, 1e+06] GB"),
    "power_entry_for_unused_hardware": (MAIN, lambda t: simulate_args(
        t, cfg=_power_npu("H100")), "entry for hardware 'H100', which no instance"),
    "throughput_output_is_a_pim_device_file": (MAIN, lambda t: [
        *pim(t), "--throughput-output", str(t / "pim" / "HBM2_1GB_2000_pim.ini")],
        "would overwrite a file of an input folder"),
    "token_id_beyond_64_bits": (MAIN, lambda t: simulate_args(
        t, "--enable-prefix-caching", dataset=trace_with(t, [2 ** 70] * 4)),
        "token id 1180591620717411303424, outside [0, 2147483647]"),
    "negative_token_id": (MAIN, lambda t: simulate_args(
        t, dataset=trace_with(t, [1, -2, 3, 4])), "token id -2"),
    "vllm_version_with_legacy": (MAIN, lambda t: simulate_args(
        t, "--vllm-version", "0.19", "--scheduler", "legacy"),
        "--vllm-version has no effect with --scheduler legacy"),
    "usage_context_with_artifact": (MAIN, lambda t: simulate_args(
        t, "--vllm-usage-context", "llm", "--compat", "artifact"),
        "--vllm-usage-context has no effect with --compat artifact"),
    "usage_context_with_both_limits": (MAIN, lambda t: simulate_args(
        t, "--vllm-usage-context", "llm", "--max-num-seqs", "8", "--max-num-batched-tokens",
        "512"), "are both given"),
    "ep_size_on_a_dense_model": (MAIN, lambda t: simulate_args(t, cfg=_current(ep_size=1)),
                                 "ep_size 1 splits experts"),
    "ep_size_beyond_the_ranks": (MAIN, lambda t: simulate_args(t, cfg=_current(ep_size=4)),
                                 "ep_size 4 of instance 0 exceeds the 1 rank(s) that can hold "
                                 "experts"),
    "dp_group_of_two_models": (MAIN, lambda t: simulate_args(t, cfg=_dp_pair(
        model_name="meta-llama/Llama-3.1-70B")), "the ranks of dp_group 'A' differ in "
        "model_name"),
    "placement_npu_garbage": (MAIN, lambda t: simulate_args(
        t, cfg=with_placement({"default": {"weights": "npuxyz"}})), "unknown location 'npuxyz'"),
    "placement_non_ascii_block_digit": (MAIN, lambda t: simulate_args(
        t, cfg=with_placement({"blocks": [{"blocks": "\u0663", "weights": "cpu"}]})),
        "malformed block range part"),
    "power_dimm_larger_than_the_node_memory": (MAIN, lambda t: simulate_args(
        t, cfg=_power_dimm(256)), "power.dram.dimm_size 256 GB exceeds the node's "
        "cpu_mem.mem_size 128 GB"),
    "power_standby_above_active": (MAIN, lambda t: simulate_args(
        t, cfg=_power_standby(350)), "standby_power 350 W is above active_power 300 W"),
    "replay_congestion_aware_on_a_two_dimensional_network": (MAIN, lambda t: simulate_args(
        t, "--network-backend", "analytical-aware", "--pricer", "replay",
        cfg=json.loads((REPO / "cluster_config/single_node_pd_instance.json").read_text())),
        "--pricer replay with --network-backend analytical-aware needs a one-dimensional"),
    "legacy_swap_space_full": (MAIN, lambda t: simulate_args(
        t, "--scheduler", "legacy", "--num-req", "all", cfg=_tight_memory(cpu_gb=0.001),
        dataset=REPO / "dataset/example_sharegpt_req100_rate10.jsonl"),
        "the legacy scheduler must swap out request 18, but its swap space"),
    "attention_prediction_on_the_roofline_fallback": (MAIN, lambda t: simulate_args(
        t, "--enable-attn-prediction", "--perf-models", t), "--enable-attn-prediction has no "
        "effect: the roofline model prices meta-llama/Llama-3.1-8B on A6000"),
    "prioritize_prefill_with_gen": (MAIN, lambda t: simulate_args(
        t, "--gen", "--prioritize-prefill"), "--prioritize-prefill has no effect with --gen"),
    "placement_range_of_thousands_of_digits": (MAIN, lambda t: simulate_args(
        t, cfg=with_placement({"blocks": [{"blocks": "0-" + "9" * 5000, "weights": "cpu"}]})),
        "out of range"),
    "profile_meta_hardware_mismatch": (MAIN, lambda t: profile_with(
        t, ("hardware: A6000", "hardware: H100")), "meta.yaml names hardware 'H100'"),
    "profile_meta_version_not_a_version": (MAIN, lambda t: profile_with(
        t, ("vllm_version: 0.19.0", "vllm_version: banana")), "'banana' is not a version"),
    "profile_meta_tp_degrees_disagree": (MAIN, lambda t: profile_with(
        t, ("tp_degrees: [1]", "tp_degrees: [2]")), "lists TP degrees [2], not 1"),
    "profile_meta_variant_mismatch": (MAIN, lambda t: profile_with(
        t, ("variant: bf16", "variant: fp8")),
        "meta.yaml names variant 'fp8' but the profile sits under 'bf16'"),
    "profile_meta_key_twice": (MAIN, lambda t: profile_with(
        t, ("hardware: A6000", "hardware: A6000\nhardware: A6000")),
        "meta.yaml sets 'hardware' twice"),
    "profile_meta_tp_degrees_repeated": (MAIN, lambda t: profile_with(
        t, ("tp_degrees: [1]", "tp_degrees: [1, 1]")), "is not a list of distinct TP degrees"),
    "profile_meta_empty": (MAIN, lambda t: profile_with(t, (META, "")), "meta.yaml is empty"),
    # Sweep specs.
    "sweep_out_is_the_spec": (SWEEP, lambda t: sweep_args(t, SPEC)[:4] + [
        "--out", str(t / "s.yaml")], "--out is an input of this run"),
    "sweep_out_is_a_cluster_config": (SWEEP, lambda t: sweep_args(t, SPEC.replace(
        "{name: a, model: meta-llama/Llama-3.1-8B, hardware: A6000}",
        f"{{name: a, cluster_config: {write_json(t / 'c.json', copy(SINGLE))}}}"))[:4] + [
        "--out", str(t / "c.json")], "--out is an input of this run"),
    "sweep_out_unwritable": (SWEEP, lambda t: sweep_args(t, SPEC)[:4] + [
        "--out", "/proc/no/rows.csv"], "cannot write into"),
    "sweep_spec_not_utf8": (SWEEP, lambda t: sweep_args(t, SPEC.encode() + b"# \xe9\n"),
                            "not UTF-8 text"),
    "sweep_spec_4000_digit_seed": (SWEEP, lambda t: sweep_args(t, SPEC + "seed: " + "9" * 5000),
                                   "a number with thousands of digits"),
    "sweep_spec_nested_too_deeply": (SWEEP, lambda t: sweep_args(
        t, "seed: " + "[" * 3000 + "]" * 3000 + "\n"), "YAML nested too deeply"),
    "sweep_grid_explodes": (SWEEP, lambda t: sweep_args(t, SPEC.replace(
        "rates: [5]", "rates: [" + ",".join(str(1 + k / 100) for k in range(10001)) + "]")),
        "the grid has more than 10000 points"),
    "sweep_cluster_config_duplicate_key": (SWEEP, lambda t: sweep_args(t, SPEC.replace(
        "{name: a, model: meta-llama/Llama-3.1-8B, hardware: A6000}",
        f"{{name: a, cluster_config: {_duplicate_key_config(t)}}}")), "duplicate key 'link_bw'"),
    # Bench folders.
    "bench_unknown_flag": (BENCH, lambda t: ["x", "--warp"], "unrecognized arguments: --warp"),
    "bench_engine_kwargs_not_an_object": (BENCH, lambda t: bench_folder(t, META_JSON % "[1]"),
                                          "'engine_kwargs' is not a JSON object"),
    "bench_num_requests_zero": (BENCH, lambda t: bench_folder(
        t, META_JSON.replace('"num_requests": 2', '"num_requests": 0') % "{}"),
        "'num_requests' must be an integer in [1,"),
    "bench_meta_duplicate_key": (BENCH, lambda t: bench_folder(
        t, (META_JSON % "{}")[:-1] + ', "num_requests": 3}'), "duplicate key 'num_requests'"),
    "bench_folder_at_the_root": (BENCH, lambda t: ["/"], "no data root three levels above"),
    # Power measurement CLI.
    "power_unknown_flag": (POWER_CLI, lambda t: ["--hardware", "A6000", "--warp"],
                           "unrecognized arguments: --warp"),
    "power_samples_not_utf8": (POWER_CLI, lambda t: [
        "--hardware", "A6000", "--samples", str(samples(t, b"\xff\xfe"))], "not UTF-8 text"),
    "power_samples_nan_time": (POWER_CLI, lambda t: [
        "--hardware", "A6000", "--samples", str(samples(t, SAMPLES + "nan,30,after\n"))],
        "sample at nan s of 30 W in phase 'after' is out of range"),
    "power_gpu_index_negative": (POWER_CLI, lambda t: [
        "--hardware", "A6000", "--gpu", "-1", "--", "true"], "--gpu must be an NVML device index"),
    "bench_prefix_caching_as_text": (BENCH, lambda t: bench_folder(
        t, META_JSON.replace('"engine_kwargs": %s', '"engine_kwargs": {}, "kv_cache": '
                             '{"enable_prefix_caching": "true"}')),
                                     "kv_cache.enable_prefix_caching must be true or false"),
    "power_interval_with_samples": (POWER_CLI, lambda t: [
        "--hardware", "A6000", "--samples", str(samples(t)), "--interval", "1"],
        "--interval has no effect with --samples"),
    "power_output_is_the_samples": (POWER_CLI, lambda t: [
        "--hardware", "A6000", "--samples", str(samples(t)), "--output", str(t / "s.csv")],
        "--output is the sample file read"),
    "power_output_unwritable": (POWER_CLI, lambda t: [
        "--hardware", "A6000", "--samples", str(samples(t)), "--output", "/proc/no/p.json"],
        "cannot write the file"),
    "power_empty_hardware": (POWER_CLI, lambda t: [
        "--hardware", " ", "--samples", str(samples(t))], "--hardware is empty"),
}


def _cpu_mem_size(gb: float) -> dict:
    cfg = copy(SINGLE)
    cfg["nodes"][0]["cpu_mem"]["mem_size"] = gb
    return cfg


def _power_without(key: str) -> dict:
    cfg = copy(POWER)
    del cfg["nodes"][0]["power"]["dram"][key]
    return cfg


def _power_dimm(size: float) -> dict:
    cfg = copy(POWER)
    cfg["nodes"][0]["power"]["dram"]["dimm_size"] = size
    return cfg


def _power_standby(watts: float) -> dict:
    cfg = copy(POWER)
    cfg["nodes"][0]["power"]["npu"]["A6000"]["standby_power"] = watts
    return cfg


def _power_npu(hardware: str) -> dict:
    cfg = copy(POWER)
    npu = cfg["nodes"][0]["power"]["npu"]
    npu[hardware] = dict(npu["A6000"])
    return cfg


def _current(**changes: object) -> dict:
    cfg = copy(SINGLE)
    inst = cfg["nodes"][0]["instances"][0]
    del inst["npu_num"], inst["npu_group"]
    inst.update(num_npus=1, tp_size=1, **changes)
    return cfg


def _tight_memory(cpu_gb: float) -> dict:
    """The default instance with 277 KV blocks of device memory and `cpu_gb` of host memory."""
    cfg = copy(SINGLE)
    cfg["nodes"][0]["instances"][0]["npu_mem"]["mem_size"] = 15.5
    cfg["nodes"][0]["cpu_mem"]["mem_size"] = cpu_gb
    return cfg


def _dp_pair(**second: object) -> dict:
    """Two one-NPU ranks of dp_group A on one node, the second changed by `second`."""
    cfg = _current(dp_group="A")
    node = cfg["nodes"][0]
    node["instances"].append({**node["instances"][0], **second})
    node["num_instances"] = 2
    return cfg


def _duplicate_key_config(tmp: Path) -> Path:
    path = tmp / "dup.json"
    path.write_text(json.dumps(SINGLE)[:-1] + ', "link_bw": 1}')
    return path


def _digests(folder: Path) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*")
            if p.is_file()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input_gives_one_error_line_and_exit_2(tmp_path, capsys, name):
    entry, make, needle = CASES[name]
    argv = make(tmp_path)
    before = _digests(tmp_path)
    status, err = run(entry, argv, capsys)
    assert status == 2, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert needle in err[0], err[0]
    assert _digests(tmp_path) == before  # nothing written, no input touched


@pytest.mark.parametrize("name,cfg,args,needle", [
    ("kv_loc_off_the_device", with_placement({"default": {"kv_loc": "cpu"}, "blocks": [
        {"blocks": "31", "weights": "cxl:0"}]}), (),
     "placement.default.kv_loc has no effect (KV always lives in device memory"),
    ("kv_evict_loc_under_recompute", with_placement({"default": {"kv_evict_loc": "cxl:1"}}),
     (), "kv_evict_loc 'cxl:1' of instance 0"),
    ("unused_cxl_pool", {**copy(SINGLE), "cxl_mem": CXL["cxl_mem"]}, (),
     "cxl_mem in"),
])
def test_accepted_settings_without_effect_draw_one_warning(tmp_path, capsys, name, cfg, args,
                                                            needle):
    status, err = run(MAIN, simulate_args(tmp_path, *args, cfg=cfg), capsys)
    assert status == 0, err
    warnings = [line for line in err if line.startswith("warning: ")]
    assert len(warnings) == 1 and needle in warnings[0], err
    assert (tmp_path / "out.csv").is_file()


def test_kv_evict_loc_is_quiet_when_swapping_uses_it(tmp_path, capsys):
    cfg = with_placement({"default": {"kv_evict_loc": "cxl:1"}})
    status, err = run(MAIN, simulate_args(tmp_path, "--preemption-mode", "swap", cfg=cfg), capsys)
    assert status == 0 and not [line for line in err if "warning" in line], err


def test_a_misspelt_profile_meta_key_is_named_in_a_warning(tmp_path, capsys):
    argv = profile_with(tmp_path, ("vllm_version: 0.19.0", "vllm_versoin: 0.19.0"))
    status, err = run(cli.main, argv, capsys)
    assert status == 0, err
    warned = [line for line in err if "'vllm_versoin'" in line]
    assert len(warned) == 1 and "did you mean 'vllm_version'?" in warned[0], err
