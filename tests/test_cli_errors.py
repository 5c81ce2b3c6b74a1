"""Bad input ends the run with one `error:` line, exit status 2 and no output file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SINGLE = json.loads((REPO / "cluster_config/single_node_single_instance.json").read_text())
GOOD_LINE = {"input_toks": 8, "output_toks": 4, "arrival_time_ns": 0}


def write_json(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj))
    return path


def write_trace(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def config_with(tmp: Path, **instance_changes: object) -> Path:
    cfg = json.loads(json.dumps(SINGLE))
    cfg["nodes"][0]["instances"][0].update(instance_changes)
    return write_json(tmp / "cluster.json", cfg)


def run_main(args: list[str], cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "main.py"), "--no-progress", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def case_malformed_cluster_json(tmp):
    bad = tmp / "bad.json"
    bad.write_text('{"num_nodes": 1,,}')
    return ["--cluster-config", str(bad)], "malformed JSON"


def case_num_nodes_mismatch(tmp):
    cfg = json.loads(json.dumps(SINGLE))
    cfg["num_nodes"] = 2
    return ["--cluster-config", str(write_json(tmp / "c.json", cfg))], "num_nodes"


def case_missing_link_bw(tmp):
    cfg = json.loads(json.dumps(SINGLE))
    del cfg["link_bw"]
    return ["--cluster-config", str(write_json(tmp / "c.json", cfg))], "link_bw"


def case_unknown_pd_type(tmp):
    return ["--cluster-config", str(config_with(tmp, pd_type="both"))], "pd_type"


def case_npu_group_not_dividing(tmp):
    return ["--cluster-config", str(config_with(tmp, npu_num=3, npu_group=2))], "npu_group"


def case_tp_not_dividing_heads(tmp):
    return ["--cluster-config", str(config_with(tmp, npu_num=3))], "does not divide"


def case_instance_larger_than_its_node(tmp):
    cfg = json.loads(json.dumps(SINGLE))
    cfg["nodes"][0]["num_npus"] = 2
    cfg["nodes"][0]["instances"][0]["npu_num"] = 4
    return ["--cluster-config", str(write_json(tmp / "c.json", cfg))], "num_npus"


def case_prefill_without_decode(tmp):
    return ["--cluster-config", str(config_with(tmp, pd_type="prefill"))], "decode instance"


def case_external_backend_with_pipeline_instance(tmp):
    binary = tmp / "astra"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    return ["--cluster-config", str(config_with(tmp, npu_num=2, npu_group=2)),
            "--network-backend", "external", "--astra-sim-bin", str(binary)], "pipeline-parallel"


def case_unknown_model(tmp):
    return ["--cluster-config", str(config_with(tmp, model_name="acme/Nope-1B"))], "unknown model"


def case_unknown_hardware(tmp):
    return ["--cluster-config", str(config_with(tmp, hardware="Abacus9000"))], "unknown hardware"


def case_missing_tp_profile(tmp):
    (tmp / "perf/A6000/meta-llama/Llama-3.1-8B/tp1").mkdir(parents=True)
    return ["--cluster-config", str(config_with(tmp, npu_num=2)),
            "--perf-models", str(tmp / "perf")], "no profile for TP degree 2"


def case_perf_file_missing_column(tmp):
    tp1 = tmp / "perf/A6000/meta-llama/Llama-3.1-8B/tp1"
    tp1.mkdir(parents=True)
    (tp1 / "layers.csv").write_text("layer_name,input,tp_size,latency(ns)\nq_proj,1,1,5\n")
    return ["--perf-models", str(tmp / "perf")], "missing column"


def case_perf_file_non_numeric_latency(tmp):
    tp1 = tmp / "perf/A6000/meta-llama/Llama-3.1-8B/tp1"
    tp1.mkdir(parents=True)
    (tp1 / "layers.csv").write_text("layer_name,input,kv_cache,tp_size,latency(ns)\n"
                                    "q_proj,1,0,1,fast\n")
    return ["--perf-models", str(tmp / "perf")], "layers.csv"


def case_model_too_big(tmp):
    mem = {"mem_size": 8, "mem_bw": 768, "mem_latency": 0}
    return ["--cluster-config", str(config_with(tmp, npu_mem=mem))], "does not fit"


def case_dataset_missing_field(tmp):
    line = json.dumps({"input_toks": 8, "arrival_time_ns": 0})
    return ["--dataset", str(write_trace(tmp / "d.jsonl", [line]))], "missing field 'output_toks'"


def case_dataset_malformed_line(tmp):
    lines = [json.dumps(GOOD_LINE), "{not json"]
    return ["--dataset", str(write_trace(tmp / "d.jsonl", lines))], "d.jsonl:2"


def case_dataset_zero_output(tmp):
    line = json.dumps({**GOOD_LINE, "output_toks": 0})
    return ["--dataset", str(write_trace(tmp / "d.jsonl", [line]))], "output_toks"


def case_dataset_not_found(tmp):
    return ["--dataset", str(tmp / "absent.jsonl")], "dataset not found"


def case_no_dataset(tmp):
    return ["--dataset", ""], "no dataset given"


def case_num_req_negative(tmp):
    return ["--num-req", "-1"], "--num-req"


def case_unknown_flag(tmp):
    return ["--warp-speed"], "unrecognized arguments"


def case_bad_log_interval(tmp):
    return ["--log-interval", "0"], "--log-interval"


def case_outputs_collide(tmp):
    return ["--metrics-json", str(tmp / "out.csv")], "same file"


def case_request_exceeds_kv(tmp):
    mem = {"mem_size": 15.0, "mem_bw": 768, "mem_latency": 0}
    line = json.dumps({**GOOD_LINE, "input_toks": 60000, "output_toks": 10})
    return ["--cluster-config", str(config_with(tmp, npu_mem=mem)),
            "--dataset", str(write_trace(tmp / "d.jsonl", [line]))], "KV blocks"


def case_unknown_vllm_version(tmp):
    return ["--vllm-version", "0.9"], "--vllm-version"


def case_unknown_vllm_usage_context(tmp):
    return ["--vllm-usage-context", "server"], "--vllm-usage-context"


def case_pim_configs_names_a_file(tmp):
    cfg = json.loads(json.dumps(SINGLE))
    cfg["nodes"][0]["cpu_mem"]["pim_config"] = "HBM2_1GB_2000_pim"
    not_a_folder = tmp / "pim.ini"
    not_a_folder.write_text("[dram_structure]\n")
    return ["--cluster-config", str(write_json(tmp / "c.json", cfg)), "--enable-attn-offloading",
            "--pim-configs", str(not_a_folder)], "HBM2_1GB_2000_pim"


CASES = [v for k, v in sorted(globals().items()) if k.startswith("case_")]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__[5:] for c in CASES])
def test_bad_input_gives_one_error_line_and_exit_2(tmp_path, case):
    args, needle = case(tmp_path)
    trace = write_trace(tmp_path / "ok.jsonl", [json.dumps(GOOD_LINE)] * 3)
    base = ["--dataset", str(trace), "--output", str(tmp_path / "out.csv")]
    done = run_main(base + args)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert needle in lines[0]
    assert not (tmp_path / "out.csv").exists()
    assert not (tmp_path / "out_throughput.csv").exists()


def test_a_failed_run_leaves_an_existing_output_untouched(tmp_path):
    out = tmp_path / "out.csv"
    out.write_text("previous results\n")
    bad = tmp_path / "d.jsonl"
    bad.write_text("{broken\n")
    done = run_main(["--dataset", str(bad), "--output", str(out)])
    assert done.returncode == 2
    assert out.read_text() == "previous results\n"
