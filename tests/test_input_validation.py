"""Hostile input: every bad file, number or path ends in one `error:` line and exit status 2,
before anything is written and without touching any input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from inference_serving.cli import main
from inference_serving.cluster_config import cluster_from_dict, load_cluster_config
from inference_serving.dataset_reader import check_windows, load_requests, parse_line
from llm_profile.calibrate import check_calibration
from llm_profile.hardware_catalog import _load as load_catalogue_file
from llm_profile.head_tables import ATTENTION_HEADER as HEAD_ATTENTION_HEADER
from llm_profile.head_tables import read_attention, read_moe
from llm_profile.profile_tables import read_grid, read_layers
from llmsim_core.args import OneLineParser, was_given
from llmsim_core.bounds import BANDWIDTH, TOKENS, checked
from llmsim_core.errors import InputError
from llmsim_core.model_config import model_from_dict
from llmsim_core.strict_json import check_keys, loads
from tests.conftest import DATA, REPO, needs_data
from tests.test_cli_errors import run_main

SINGLE = json.loads((REPO / "cluster_config/single_node_single_instance.json").read_text())
GOOD = {"input_toks": 8, "output_toks": 4, "arrival_time_ns": 0}
LLAMA = json.loads((REPO / "model_config/meta-llama/Llama-3.1-8B.json").read_text())
LAYERS_HEADER = "layer_name,input,kv_cache,tp_size,latency(ns)\n"


def cluster(tmp: Path, text: str | None = None, top: dict | None = None,
            node: dict | None = None, inst: dict | None = None, npu_mem: dict | None = None,
            cpu_mem: dict | None = None) -> list[str]:
    """--cluster-config of the default config with changes at each level (or raw text)."""
    cfg = json.loads(json.dumps(SINGLE))
    cfg.update(top or {})
    cfg["nodes"][0].update(node or {})
    cfg["nodes"][0]["cpu_mem"].update(cpu_mem or {})
    cfg["nodes"][0]["instances"][0].update(inst or {})
    cfg["nodes"][0]["instances"][0]["npu_mem"].update(npu_mem or {})
    path = tmp / "cluster.json"
    path.write_text(json.dumps(cfg) if text is None else text)
    return ["--cluster-config", str(path)]


def raw_cluster(tmp: Path, replace: tuple[str, str]) -> list[str]:
    """The default config with one literal substitution (for NaN and friends json cannot write)."""
    text = json.dumps(SINGLE)
    assert replace[0] in text
    return cluster(tmp, text.replace(*replace, 1))


def trace(tmp: Path, *lines: str | bytes) -> list[str]:
    path = tmp / "trace.jsonl"
    path.write_bytes(b"".join((ln if isinstance(ln, bytes) else ln.encode()) + b"\n"
                              for ln in (json.dumps(GOOD), *lines)))
    return ["--dataset", str(path)]


def model_root(tmp: Path, data: bytes) -> list[str]:
    """A model config root with acme/Tiny (the given bytes) served by the default cluster."""
    (tmp / "models/acme").mkdir(parents=True)
    (tmp / "models/acme/Tiny.json").write_bytes(data)
    return [*cluster(tmp, inst={"model_name": "acme/Tiny"}), "--model-configs",
            str(tmp / "models")]


def model_with(tmp: Path, **changes: object) -> list[str]:
    return model_root(tmp, json.dumps({**LLAMA, **changes}).encode())


def profile(tmp: Path, files: dict[str, bytes]) -> list[str]:
    """A --perf-models root whose A6000 Llama-3.1-8B tp1 folder holds `files`."""
    tp1 = tmp / "perf/A6000/meta-llama/Llama-3.1-8B/tp1"
    (tp1 / "predictions").mkdir(parents=True)
    for name, data in files.items():
        (tp1 / name).write_bytes(data)
    return ["--perf-models", str(tmp / "perf")]


def layers(latency: str) -> bytes:
    return (LAYERS_HEADER + f"q_proj,1,0,1,{latency}\n").encode()


ATTENTION_HEADER = "prefill_chunk_size,kv_cache_size,batch_size,is_prefill,mean_ns,p50_ns," \
    "p90_ns,max_ns\n"


CASES: dict[str, tuple] = {
    # --- cluster config: JSON that Python's json module would accept -----------------------
    "cluster_nan": (lambda t: raw_cluster(t, ('"link_bw": 112', '"link_bw": NaN')),
                    "non-finite number NaN (numbers must be finite) at line 1 column "),
    "cluster_infinity": (lambda t: raw_cluster(t, ('"mem_bw": 768', '"mem_bw": -Infinity')),
                         "-Infinity (numbers must be finite) at line 1 column"),
    "cluster_lone_surrogate": (lambda t: raw_cluster(t, ('"meta-llama/Llama-3.1-8B"',
                                                        '"meta-llama/Llama\\udce9"')),
                               "string with a lone surrogate \\udce9 (not valid Unicode)"),
    "cluster_beyond_float": (lambda t: raw_cluster(t, ('"link_bw": 112', '"link_bw": 1e400')),
                             "beyond the float range"),
    "cluster_mem_latency_nan": (lambda t: raw_cluster(t, ('"mem_latency": 0',
                                                          '"mem_latency": NaN')),
                                "(key 'mem_latency')"),
    "cluster_binary_garbage": (lambda t: _bytes_cluster(t, b"\xff\xfe\x00garbage\x80"),
                               "not UTF-8"),
    "cluster_utf16": (lambda t: _bytes_cluster(t, json.dumps(SINGLE).encode("utf-16")),
                      "not UTF-8"),
    "cluster_deep_nesting": (lambda t: cluster(t, text="[" * 200000 + "]" * 200000),
                             "nested too deeply"),
    "cluster_duplicate_key": (lambda t: raw_cluster(t, ('"link_bw": 112',
                                                        '"link_bw": 112, "link_bw": 1')),
                              "duplicate key 'link_bw' at line 1 column 34"),
    "cluster_big_integer": (lambda t: raw_cluster(t, ('"num_nodes": 1',
                                                      '"num_nodes": ' + "9" * 5000)),
                            "a number with thousands of digits"),
    # --- cluster config: typos name the key they meant -------------------------------------
    "typo_npu_nmu": (lambda t: cluster(t, inst={"npu_nmu": 1}), "did you mean 'npu_num'"),
    "typo_mem_utl": (lambda t: cluster(t, npu_mem={"mem_utl": 0.9}), "did you mean 'mem_util'"),
    "typo_max_num_seq": (lambda t: cluster(t, inst={"max_num_seq": 8}),
                         "did you mean 'max_num_seqs'"),
    "typo_link_bandwidth": (lambda t: cluster(t, top={"link_bandwidth": 10}),
                            "did you mean 'link_bw'"),
    "typo_in_cpu_mem": (lambda t: cluster(t, cpu_mem={"mem_bww": 10}), "cpu_mem.mem_bww"),
    "typo_in_node": (lambda t: cluster(t, node={"num_instance": 1}),
                     "did you mean 'num_instances'"),
    # --- cluster config: physical ranges ---------------------------------------------------
    "link_bw_tiny": (lambda t: cluster(t, top={"link_bw": 1e-300}),
                     "'link_bw' must be a number in [0.001, 1e+12] GB/s"),
    "npu_mem_bw_tiny": (lambda t: cluster(t, npu_mem={"mem_bw": 1e-300}), "'mem_bw' must be"),
    "cpu_mem_bw_below_a_whole_gb_per_s": (lambda t: cluster(t, cpu_mem={"mem_bw": 0.5}),
                                          "'mem_bw' must be a number in [1, 1e+12] GB/s "
                                          "(memories are timed at whole GB/s"),
    "cpu_mem_bw_zero": (lambda t: cluster(t, cpu_mem={"mem_bw": 0}), "'mem_bw' must be"),
    "link_latency_huge": (lambda t: cluster(t, top={"link_latency": 1e308}),
                          "'link_latency' must be a number in [0, 1e+12] ns"),
    "mem_latency_huge": (lambda t: cluster(t, npu_mem={"mem_latency": 1e308}), "mem_latency"),
    "inter_node_bw_tiny": (lambda t: cluster(t, top={"inter_node_link_bw": 1e-9}),
                           "inter_node_link_bw"),
    "fractional_npu_num": (lambda t: cluster(t, inst={"npu_num": 1.5}), "'npu_num' must be an "
                           "integer"),
    "mem_util_above_one": (lambda t: cluster(t, npu_mem={"mem_util": 1.5}), "mem_util"),
    "mem_size_negative": (lambda t: cluster(t, npu_mem={"mem_size": -40}), "mem_size"),
    "oproj_overhead_negative": (lambda t: cluster(t, inst={
        "pd_type": "prefill", "prefill_oproj_overhead_ns": -1}),
        "'prefill_oproj_overhead_ns' must be"),
    "oproj_overhead_at_tp_one": (lambda t: cluster(t, inst={
        "pd_type": "prefill", "prefill_oproj_overhead_ns": 5}),
        "prefill_oproj_overhead_ns applies only to an instance with TP > 1"),
    "oproj_overhead_fraction": (lambda t: cluster(t, inst={
        "pd_type": "decode", "decode_oproj_overhead_ns": 2.5}),
        "'decode_oproj_overhead_ns' must be"),
    "oproj_overhead_on_colocated": (lambda t: cluster(t, inst={
        "prefill_oproj_overhead_ns": 1000}),
        "prefill_oproj_overhead_ns applies only to a prefill instance"),
    # --- model config ----------------------------------------------------------------------
    "model_nan": (lambda t: model_root(t, json.dumps(LLAMA).replace(
        '"hidden_size": 4096', '"hidden_size": NaN').encode()), "NaN"),
    "model_utf16": (lambda t: model_root(t, json.dumps(LLAMA).encode("utf-16")), "not UTF-8"),
    "model_binary": (lambda t: model_root(t, bytes(range(256))), "not UTF-8"),
    "model_fractional_layers": (lambda t: model_with(t, num_hidden_layers=31.5),
                                "'num_hidden_layers' must be an integer"),
    "model_typo_names_it": (lambda t: model_root(t, json.dumps(LLAMA).replace(
        "num_hidden_layers", "num_hiden_layers").encode()), "rename 'num_hiden_layers'"),
    "model_duplicate_key": (lambda t: model_root(t, json.dumps(LLAMA).replace(
        '"vocab_size": 128256', '"vocab_size": 128256, "vocab_size": 32000').encode()),
                            "duplicate key 'vocab_size'"),
    "model_beyond_float": (lambda t: model_root(t, json.dumps(LLAMA).replace(
        '"rope_theta": 500000.0', '"rope_theta": 1e999').encode()), "beyond the float range"),
    # --- dataset lines ---------------------------------------------------------------------
    "dataset_nan_arrival": (lambda t: trace(t, '{"input_toks": 8, "output_toks": 4, '
                                            '"arrival_time_ns": NaN}'), "trace.jsonl:2"),
    "dataset_infinite_tokens": (lambda t: trace(t, '{"input_toks": Infinity, "output_toks": 4, '
                                                '"arrival_time_ns": 0}'), "Infinity"),
    "dataset_float_tokens": (lambda t: trace(t, json.dumps({**GOOD, "input_toks": 12.5})),
                             "'input_toks' must be an integer"),
    "dataset_longer_than_model": (lambda t: trace(t, json.dumps({**GOOD, "input_toks": 131000,
                                                                 "output_toks": 100})),
                                  "exceeds the model's maximum length 131072"),
    "dataset_token_ids_length": (lambda t: trace(t, json.dumps({**GOOD,
                                                                "input_tok_ids": [1, 2]})),
                                 "'input_tok_ids' has 2 ids but input_toks is 8"),
    "dataset_token_ids_not_ints": (lambda t: trace(t, json.dumps(
        {**GOOD, "output_tok_ids": [1.5, 2, 3, 4]})), "list of integer token ids"),
    "dataset_duplicate_key": (lambda t: trace(t, '{"input_toks": 8, "input_toks": 9, '
                                              '"output_toks": 4, "arrival_time_ns": 0}'),
                              "duplicate key 'input_toks'"),
    "dataset_deep_nesting": (lambda t: trace(t, "[" * 100000 + "]" * 100000),
                             "nested too deeply"),
    "dataset_not_utf8": (lambda t: trace(t, b'{"input_toks": 8, "x": "\xff"}'), "not UTF-8"),
    "dataset_arrival_1e18": (lambda t: trace(t, json.dumps({**GOOD, "arrival_time_ns": 1e18})),
                             "'arrival_time_ns' must be a number in [0, 1e+15] ns"),
    "dataset_typo_names_it": (lambda t: trace(t, json.dumps({"input_tok": 8, "output_toks": 4,
                                                             "arrival_time_ns": 0})),
                              "rename 'input_tok' to 'input_toks'"),
    "dataset_too_many_windows": (lambda t: [*trace(t, json.dumps({**GOOD,
                                                                  "arrival_time_ns": 1e14})),
                                            "--log-interval", "0.001"], "status windows"),
    # --- perf tables -----------------------------------------------------------------------
    "layers_negative_latency": (lambda t: profile(t, {"layers.csv": layers("-5")}),
                                "'latency(ns)' must be a number in [0, 1e+12] ns"),
    "layers_nan_latency": (lambda t: profile(t, {"layers.csv": layers("nan")}), "got nan"),
    "layers_infinite_latency": (lambda t: profile(t, {"layers.csv": layers("1e999")}),
                                "got inf"),
    "layers_tokens_beyond_int32": (lambda t: profile(t, {"layers.csv": (
        LAYERS_HEADER + "q_proj,1,0,1,100\nq_proj,1099511627776,0,1,100\n").encode()}),
        "'input' must be an integer in [1, 2147483647]"),
    "layers_fractional_tokens": (lambda t: profile(t, {"layers.csv": (
        LAYERS_HEADER + "q_proj,1.5,0,1,100\n").encode()}), "non-numeric"),
    "layers_utf16": (lambda t: profile(t, {"layers.csv": layers("100").decode().encode(
        "utf-16")}), "not UTF-8"),
    "attention_batch_zero": (lambda t: profile(t, {"layers.csv": layers("100"), "attention.csv": (
        ATTENTION_HEADER + "64,0,1,True,1,1,1,1\n1,64,0,False,1,1,1,1\n").encode()}),
                             "'batch_size' must be an integer in [1, 2147483647]"),
    "attention_batch_beyond_int32": (lambda t: profile(t, {
        "layers.csv": layers("100"), "attention.csv": (
            ATTENTION_HEADER + "64,0,1,True,1,1,1,1\n1,64,99999999999999999999,False,1,1,1,1\n"
        ).encode()}), "'batch_size' must be an integer in [1, 2147483647]"),
    "attention_row_of_another_tp": (lambda t: profile(t, {
        "layers.csv": layers("100"), "attention.csv": (
            ATTENTION_HEADER.replace("\n", ",num_tensor_parallel_workers\n")
            + "64,0,1,True,1,1,1,1,1\n1,64,1,False,1,1,1,1,4\n").encode()}),
        "the row is profiled at TP 4 but lies in the tp1 folder"),
    "prediction_one_point_axis": (lambda t: profile(t, {
        "layers.csv": layers("100"),
        "predictions/attn_prefill_predictions.csv":
            b"kv_cache_size,prefill_chunk_size,prediction\n0,32,5\n0,64,6\n64,32,7\n64,64,8\n",
        "predictions/attn_decode_predictions.csv":
            b"batch_size,kv_cache_size,prediction\n1,0,5\n"}),
        "the grid needs at least two values on each axis (it has 1 x 1)"),
    "vocab_smaller_than_tp": (lambda t: [*model_with(t, vocab_size=1), *cluster(
        t, inst={"model_name": "acme/Tiny", "npu_num": 2})],
                              "TP degree 2 exceeds the model's vocab_size (1)"),
    "prediction_infinite": (lambda t: profile(t, {
        "layers.csv": layers("100"),
        "predictions/attn_prefill_predictions.csv":
            b"kv_cache_size,prefill_chunk_size,prediction\n0,32,inf\n",
        "predictions/attn_decode_predictions.csv":
            b"batch_size,kv_cache_size,prediction\n1,0,5\n"}), "non-finite"),
    "prediction_negative": (lambda t: profile(t, {
        "layers.csv": layers("100"),
        "predictions/attn_prefill_predictions.csv":
            b"kv_cache_size,prefill_chunk_size,prediction\n0,32,-7\n",
        "predictions/attn_decode_predictions.csv":
            b"batch_size,kv_cache_size,prediction\n1,0,5\n"}),
                            "measured time), got -7"),
    "prediction_grid_without_its_pair": (lambda t: profile(t, {
        "layers.csv": layers("100"),
        "predictions/attn_decode_predictions.csv":
            b"batch_size,kv_cache_size,prediction\n1,0,5\n"}),
                                         "attn_decode_predictions.csv has no "
                                         "attn_prefill_predictions.csv beside it"),
    # --- flags -----------------------------------------------------------------------------
    "perf_models_with_roofline": (lambda t: ["--perf-models", str(t), "--perf-model",
                                             "roofline"],
                                  "--perf-models has no effect with --perf-model roofline"),
    "log_interval_1e-12": (lambda t: ["--log-interval", "1e-12"],
                           "'--log-interval' must be a number in [0.001, 1e+06] s"),
    "log_interval_nan": (lambda t: ["--log-interval", "nan"], "--log-interval"),
    "negative_seed_moe": (lambda t: [*cluster(t, inst={
        "model_name": "microsoft/Phi-mini-MoE-instruct"}), "--seed", "-1"], "--seed must be >= 0"),
    # --- output paths (checked before the run) ---------------------------------------------
    "output_is_dataset": (lambda t: [*trace(t), "--output", str(t / "trace.jsonl")],
                          "--output is an input of this run"),
    "output_is_cluster_config": (lambda t: [*cluster(t), "--output", str(t / "cluster.json")],
                                 "--output is an input of this run"),
    "metrics_is_cluster_config": (lambda t: [*cluster(t), "--metrics-json",
                                             str(t / "cluster.json")],
                                  "--metrics-json is an input"),
    "output_via_symlink_to_dataset": (lambda t: _symlink_output(t), "is an input of this run"),
    "output_overwrites_model_config": (lambda t: [*model_with(t), "--output",
                                                  str(t / "models/acme/Tiny.json")],
                                       "would overwrite a file of an input folder"),
    "output_is_directory": (lambda t: ["--output", str(_mkdir(t / "outdir"))],
                            "--output names a directory"),
    "throughput_is_directory": (lambda t: ["--throughput-output", str(_mkdir(t / "tdir"))],
                                "--throughput-output names a directory"),
    "metrics_is_directory": (lambda t: ["--metrics-json", str(_mkdir(t / "mdir"))],
                             "--metrics-json names a directory"),
    "output_under_a_file": (lambda t: ["--output", str(_file(t / "plain.txt") / "out.csv")],
                            "which is a file, not a folder"),
    "metrics_under_a_file": (lambda t: ["--metrics-json",
                                        str(_file(t / "plain.txt") / "sub/m.json")],
                             "which is a file, not a folder"),
    "output_unwritable_folder": (lambda t: ["--output", str(_unwritable(t) / "out.csv")],
                                 "cannot write into"),
    "export_chakra_is_a_file": (lambda t: ["--export-chakra", str(_file(t / "chakra"))],
                                "--export-chakra names a file"),
    "export_chakra_under_a_file": (lambda t: ["--export-chakra",
                                              str(_file(t / "plain.txt") / "chakra")],
                                   "which is a file, not a folder"),
}


def _bytes_cluster(tmp: Path, data: bytes) -> list[str]:
    (tmp / "cluster.json").write_bytes(data)
    return ["--cluster-config", str(tmp / "cluster.json")]


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _file(path: Path) -> Path:
    path.write_text("keep me\n")
    return path


def _symlink_output(tmp: Path) -> list[str]:
    args = trace(tmp)
    (tmp / "link.csv").symlink_to(tmp / "trace.jsonl")
    return [*args, "--output", str(tmp / "link.csv")]


def _unwritable(tmp: Path) -> Path:
    """A folder nobody may create files in (root ignores mode bits, but not sysfs)."""
    if os.geteuid() == 0:
        return Path("/sys")
    folder = _mkdir(tmp / "locked")
    folder.chmod(0o500)
    return folder


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `root` (not following links): contents and modification time."""
    return {str(p.relative_to(root)): (p.read_bytes() if not p.is_symlink() else b"link",
                                       p.lstat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file() or p.is_symlink()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_stops_before_writing_anything(tmp_path, capsys, name):
    make, needle = CASES[name]
    ok_trace = tmp_path / "ok.jsonl"
    ok_trace.write_text(json.dumps(GOOD) + "\n")
    (tmp_path / "kept.json").write_text("previous metrics\n")
    base = ["--no-progress", "--dataset", str(ok_trace), "--output", str(tmp_path / "out.csv"),
            "--metrics-json", str(tmp_path / "kept.json")]
    args = base + make(tmp_path)
    before = snapshot(tmp_path)
    default_config = (REPO / "cluster_config/single_node_single_instance.json").read_bytes()
    status = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert err[0].count(", ") >= 2  # what, where, how to fix
    assert needle in err[0], err[0]
    assert snapshot(tmp_path) == before  # no output, kept.json untouched, inputs intact
    assert (REPO / "cluster_config/single_node_single_instance.json").read_bytes() == \
        default_config


def test_there_are_at_least_forty_cases():
    assert len(CASES) >= 40


@pytest.mark.parametrize("name", ["cluster_utf16", "dataset_deep_nesting",
                                  "output_is_dataset", "attention_batch_zero"])
def test_the_real_entry_point_prints_no_traceback(tmp_path, name):
    make, needle = CASES[name]
    ok_trace = tmp_path / "ok.jsonl"
    ok_trace.write_text(json.dumps(GOOD) + "\n")
    done = run_main(["--dataset", str(ok_trace), *make(tmp_path)])
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and needle in done.stderr


def test_json_hooks_reject_what_python_accepts():
    for text, needle in (("[NaN]", "NaN"), ("[1e309]", "float range"), ('{"a":1,"a":2}',
                                                                       "duplicate key 'a'"),
                         ("[" * 100000, "nested too deeply")):
        with pytest.raises(InputError, match=needle):
            loads(text, "x.json", "fix it")
    assert loads('{"a": [1, 2.5, "s"]}', "x.json", "fix it") == {"a": [1, 2.5, "s"]}


def test_unknown_key_names_the_closest_known_key_or_lists_them():
    with pytest.raises(InputError) as near:
        check_keys({"npu_nmu": 1}, {"npu_num", "npu_group"}, "nodes[0].", "c.json")
    assert near.value.line() == ("error: unknown key 'npu_nmu', key 'nodes[0].npu_nmu' in "
                                 "c.json, did you mean 'npu_num'?")
    with pytest.raises(InputError, match="known keys here: npu_group, npu_num"):
        check_keys({"zzz": 1}, {"npu_num", "npu_group"}, "", "c.json")


def test_bounds_state_the_range_and_accept_its_edges():
    assert checked(1e-3, BANDWIDTH, "link_bw", "w", "f") == 1e-3
    assert checked(1e12, BANDWIDTH, "link_bw", "w", "f") == 1e12
    with pytest.raises(InputError, match=r"\[1, 2147483647\] tokens"):
        checked(2**31, TOKENS, "input_toks", "w", "f")
    with pytest.raises(InputError, match="got True"):
        checked(True, TOKENS, "input_toks", "w", "f")


def test_every_spec_key_is_modelled_without_a_warning(tmp_path, capsys):
    cfg = json.loads(json.dumps(SINGLE))
    cfg["cxl_mem"] = {"mem_size": 512, "mem_bw": 60, "mem_latency": 250}
    cfg["nodes"][0]["cpu_mem"]["pim_config"] = "DDR4_8GB_3200_pim"
    cfg["nodes"][0]["instances"][0]["placement"] = {"default": {"weights": "cpu"}}
    cfg["nodes"][0]["instances"].append(cfg["nodes"][0]["instances"][0])
    cfg["nodes"][0]["num_instances"] = 2
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    parsed = load_cluster_config(path)
    assert capsys.readouterr().err == ""
    assert parsed.nodes[0].pim_config == "DDR4_8GB_3200_pim"
    assert parsed.instances[1].placement.weights == "cpu"
    assert parsed.cxl_mem.num_devices == 1
    assert parsed.cxl_mem.memory.size_bytes == 512 << 30


def test_cxl_pool_is_parsed_and_checked():
    cfg = json.loads(json.dumps(SINGLE))
    cfg["cxl_mem"] = {"mem_size": 256, "mem_bw": 64, "mem_latency": 250, "num_devices": 4}
    pool = cluster_from_dict(cfg, "c.json").cxl_mem
    assert (pool.num_devices, pool.memory.bw_bytes_per_ns, pool.memory.latency_ns) == (4, 64, 250)
    cfg["cxl_mem"]["mem_size"] = -5
    with pytest.raises(InputError, match="cxl_mem.mem_size"):
        cluster_from_dict(cfg, "c.json")
    cfg["cxl_mem"] = {"mem_size": 256, "mem_bw": 64, "mem_latency": 250, "num_device": 2}
    with pytest.raises(InputError, match="num_devices"):
        cluster_from_dict(cfg, "c.json")


def test_oproj_overheads_are_stored_on_the_instance():
    cfg = json.loads((REPO / "cluster_config/dual_node_pd_tp2.json").read_text())
    cfg["nodes"][0]["instances"][0]["prefill_oproj_overhead_ns"] = 1500
    prefill, decode, _ = cluster_from_dict(cfg, "c.json").instances
    assert (prefill.prefill_oproj_overhead_ns, prefill.decode_oproj_overhead_ns) == (1500, None)
    assert decode.decode_oproj_overhead_ns is None


def test_calibration_and_catalogue_files_are_strict(tmp_path):
    table = {"token_log2_grid": [0, 1], "classes": {"gemm": [0.5, -0.1]},
             "gemm_by_weight_log2": {}, "elementwise": {}, "elementwise_by_family": {}}
    with pytest.raises(InputError, match="-0.1 is not a number >= 0"):
        check_calibration(table, tmp_path / "A6000.json")
    with pytest.raises(InputError, match="not a calibration table"):
        check_calibration({"classes": {}}, tmp_path / "A6000.json")
    spec = json.loads((REPO / "llm_profile/hardware/A6000.json").read_text())
    bad = tmp_path / "X.json"
    bad.write_text(json.dumps(spec).replace('"tdp_w": 300', '"tdp_w": NaN'))
    assert '"tdp_w": NaN' in bad.read_text()
    with pytest.raises(InputError, match="NaN"):
        load_catalogue_file(bad)


def _reference_configs() -> list[Path]:
    return sorted([*DATA.glob("artifact_configs/**/*.json"), *DATA.glob("cluster_config/*.json")])


def test_every_shipped_cluster_config_is_accepted(capsys):
    for path in sorted((REPO / "cluster_config").glob("*.json")):
        load_cluster_config(path)
    assert capsys.readouterr().err == ""


@needs_data
def test_every_reference_cluster_config_is_accepted():
    configs = _reference_configs()
    assert len(configs) >= 30
    parsed = [load_cluster_config(path) for path in configs]
    # Every power block of the figure 6 and 10 configs and the power example is read.
    assert sum(node.power is not None for c in parsed for node in c.nodes) >= 6


def _traces() -> list[Path]:
    shared = [*DATA.glob("datasets/*.jsonl"), *DATA.glob("datasets_head/*.jsonl")] \
        if DATA.is_dir() else []
    return sorted([*(REPO / "dataset").glob("*.jsonl"), *shared])


@pytest.mark.parametrize("path", _traces(), ids=lambda p: p.name)
def test_every_shipped_and_reference_trace_is_accepted(path):
    # The longest context any shipped model offers; the first 300 lines keep this fast.
    table, _ = load_requests(path, 300, max_len=131072)
    assert len(table) and (table.prompt >= 1).all() and (table.output >= 1).all()
    assert sorted(table.rid.tolist()) == list(range(len(table)))


def test_load_requests_accepts_a_trace_right_at_the_window_limit(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({**GOOD, "arrival_time_ns": 2_000_000 * 500_000_000}) + "\n")
    requests, _ = load_requests(path, 10, max_len=12, interval_ns=500_000_000)
    assert requests.arrival.tolist() == [10**15]
    with pytest.raises(InputError, match="status windows"):
        load_requests(path, 10, interval_ns=499_999_999)
    with pytest.raises(InputError, match="maximum length 11"):
        load_requests(path, 10, max_len=11)


@pytest.mark.parametrize(("instances", "limit"), [(1, 2_000_000), (2, 2_000_000),
                                                  (4, 1_000_000), (16, 250_000)])
def test_clusters_of_many_instances_allow_fewer_status_windows(instances, limit):
    """A block prints a line per instance: past two, the windows before the last arrival
    shrink so that no run prints more than two instances' worth."""
    check_windows(limit * 1000, 1000, "t", instances)
    with pytest.raises(InputError, match=f"status windows into the run \\(at most {limit} for "
                                         f"{instances} instance"):
        check_windows(limit * 1000 + 1000, 1000, "t", instances)


CANONICAL_EDGES = [  # (input_toks, output_toks, arrival_time_ns) as written in the line
    ("1", "1", "0"), ("8", "4", "1000"), ("0", "4", "5"), ("8", "0", "5"),
    ("2147483647", "1", "0"), ("2147483648", "1", "0"), ("8", "4", "1000000000000000"),
    ("8", "4", "1000000000000001"), ("08", "4", "0"), ("8", "4", "9999999999999999"),
    ("8", "4", "99999999999999999"), ("8", "4", "-1"), ("8.0", "4", "0"), ("8", "4", "1e3"),
    ("100", "28", "7"), ("100", "29", "7"),
]


@pytest.mark.parametrize("spacing", ['{{"input_toks": {}, "output_toks": {}, '
                                     '"arrival_time_ns": {}}}',
                                     '  {{ "input_toks" :{} ,"output_toks":{}\t, '
                                     '"arrival_time_ns": {} }}\t\r'])
@pytest.mark.parametrize(("max_len", "accepts"), [(128, 6), (None, 8)])
def test_plain_lines_read_without_the_json_parser_agree_with_the_full_parse(tmp_path, spacing,
                                                                             max_len, accepts):
    # The reader's fast path for generator-written lines must accept exactly what the full
    # parse (`parse_line`) accepts, with the same numbers, and leave the errors to it.
    accepted = 0
    for n_in, n_out, at in CANONICAL_EDGES:
        line = spacing.format(n_in, n_out, at).encode() + b"\n"
        path = tmp_path / "t.jsonl"
        path.write_bytes(line)
        try:
            expected = parse_line(line, f"{path}:1", max_len)
        except InputError as error:
            with pytest.raises(InputError) as raised:
                load_requests(path, 10, max_len=max_len)
            assert str(raised.value) == str(error)
            continue
        assert expected is not None
        table, _ = load_requests(path, 10, max_len=max_len)
        assert (table.prompt.tolist(), table.output.tolist(), table.arrival.tolist()) == \
            ([expected[0]], [expected[1]], [expected[2]])
        accepted += 1
    assert accepted == accepts


def test_a_profile_row_repeated_with_the_same_latency_is_accepted(tmp_path):
    path = tmp_path / "layers.csv"
    path.write_text(LAYERS_HEADER + "q_proj,1,0,1,100\nq_proj,2,0,1,150\nq_proj,1,0,1,100\n")
    curve = read_layers(path, 1)["q_proj"]
    assert curve.tokens.tolist() == [1, 2] and curve.latency.tolist() == [100, 150]


def test_scattered_profile_points_are_refused_before_a_dense_grid_is_made(tmp_path):
    attention = tmp_path / "attention.csv"
    attention.write_text(",".join(HEAD_ATTENTION_HEADER) + "\n" +
                         "".join(f"{i + 1},{i},{i + 1},{i + 1},5\n" for i in range(400)))
    with pytest.raises(InputError, match=r"axes span 400 x 400 x 400 x 400 cells"):
        read_attention(attention)
    moe = tmp_path / "moe.csv"
    moe.write_text("tokens,activated_experts,time_us\n" +
                   "".join(f"{i + 1},{i + 1},5\n" for i in range(2000)))
    with pytest.raises(InputError, match=r"axes span 2000 x 2000 cells"):
        read_moe(moe)
    grid = tmp_path / "grid.csv"
    grid.write_text("batch_size,kv_cache_size,prediction\n" +
                    "".join(f"{i},{i},1000\n" for i in range(100_000)))
    with pytest.raises(InputError, match="the grid has holes"):
        read_grid(grid, ("batch_size", "kv_cache_size", "prediction"))


@pytest.mark.parametrize("bad", ["foo,bar,baz", "1,0,0x42C6"])
def test_a_non_numeric_prediction_grid_cell_is_an_input_error(tmp_path, bad):
    grid = tmp_path / "grid.csv"
    grid.write_text(f"batch_size,kv_cache_size,prediction\n1,0,5\n{bad}\n")
    with pytest.raises(InputError, match="non-numeric"):
        read_grid(grid, ("batch_size", "kv_cache_size", "prediction"))


def test_a_misspelt_optional_model_key_is_named_in_a_warning(tmp_path):
    raw = {k: v for k, v in LLAMA.items() if k != "num_key_value_heads"}
    warnings: list[str] = []
    model = model_from_dict("acme/Tiny", {**raw, "num_key_value_head": 8, "rope_theta": 5e5},
                            "Tiny.json", warnings.append)
    assert model.num_kv_heads == model.num_heads  # the default applies, and it says so
    assert warnings == ["Tiny.json: key 'num_key_value_head' is not read; did you mean "
                        "'num_key_value_heads'? (without it, 'num_key_value_heads' takes its "
                        "default)"]
    warnings.clear()
    model_from_dict("acme/Tiny", LLAMA, "Tiny.json", warnings.append)
    assert warnings == []  # every shipped key is read or unrelated


def test_a_string_default_argparse_converts_is_not_a_flag_given():
    parser = OneLineParser()
    parser.add_argument("--root", type=Path, default="some/where")
    parser.add_argument("--mode", default="auto")
    quiet = parser.parse_args([])
    assert quiet.root == Path("some/where")
    assert not was_given(quiet, "root") and not was_given(quiet, "mode")
    given = parser.parse_args(["--root", "else", "--mode", "x"])
    assert was_given(given, "root") and was_given(given, "mode")
    assert parser.parse_args(["--root", "a", "--root", "b"])._warnings  # repeated, differing


@pytest.mark.parametrize(("row", "line"), [("q_proj,1_0,0,1,100", 2), ("q_proj,١,0,1,100", 2),
                                           ("q_proj,1,abc,1,100", 2)])
def test_profile_counts_are_plain_digits(tmp_path, row, line):
    path = tmp_path / "layers.csv"
    path.write_text(LAYERS_HEADER + row + "\n")
    with pytest.raises(InputError, match=f"non-numeric or missing value on line {line}"):
        read_layers(path, 1)


def test_current_layout_counts_are_whole_numbers(tmp_path):
    moe = tmp_path / "moe.csv"
    moe.write_text("tokens,activated_experts,time_us\n2048.9,1,5\n")
    with pytest.raises(InputError, match="a count on line 2 is not a whole number"):
        read_moe(moe)


def test_a_scheduling_flag_every_instance_overrides_is_named_in_a_warning(tmp_path, capsys):
    trace_file = tmp_path / "ok.jsonl"
    trace_file.write_text(json.dumps(GOOD) + "\n")
    args = ["--no-progress", "--quiet", "--dataset", str(trace_file), "--output",
            str(tmp_path / "out.csv"), *cluster(tmp_path, inst={"block_size": 32})]
    assert main([*args, "--block-size", "16", "--max-num-seqs", "8"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [f"warning: --block-size 16 changed nothing: every instance of "
                   f"{tmp_path / 'cluster.json'} sets its own block_size"]
    assert main(args) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("root", ["CALIBRATION_DIR", "CATALOGUE_DIR"])
def test_outputs_never_overwrite_calibration_tables_or_the_hardware_catalogue(
        tmp_path, monkeypatch, capsys, root):
    """Both folders are read by every roofline run (here moved to tmp_path, so that a failing
    check cannot destroy the repository's own files)."""
    from inference_serving import output_paths
    folder = tmp_path / root
    folder.mkdir()
    (folder / "A6000.json").write_text("{}")
    monkeypatch.setattr(output_paths, root, folder)
    status = main(["--dataset", str(REPO / "dataset/example_trace.jsonl"), "--quiet",
                       "--no-progress", "--metrics-json", str(folder / "A6000.json")])
    err = capsys.readouterr().err.splitlines()
    assert status == 2 and len(err) == 1 and "would overwrite a file of an input folder" in err[0]
    assert (folder / "A6000.json").read_text() == "{}"
