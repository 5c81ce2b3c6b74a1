"""End-to-end runs of `main.py`: outputs, parsers of the existing tool, determinism, reference."""

from __future__ import annotations

import ast
import csv
import json
import re
from pathlib import Path

import pytest

from astra_sim.chakra_et import CASYS_NUMBERING, read_et
from llmsim_core.model_config import load_model_config
from llmsim_core.paths import MODEL_CONFIG_DIR
from tests.conftest import DATA, REPO, needs_data
from tests.test_cli_errors import run_main, write_trace

EXAMPLE = "dataset/example_sharegpt_req100_rate10.jsonl"
DEFAULT = ["--dataset", EXAMPLE, "--log-interval", "1.0"]


def run_ok(args: list[str]) -> str:
    done = run_main(args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("default")
    out = tmp / "out.csv"
    stdout = run_ok([*DEFAULT, "--output", str(out), "--metrics-json", str(tmp / "m.json"),
                     "--check-invariants"])
    return stdout, out, tmp


def test_per_request_csv_has_the_existing_columns_and_consistent_values(default_run):
    _, out, _ = default_run
    rows = read_rows(out)
    assert list(rows[0]) == ["instance id", "request id", "model", "input", "output", "arrival",
                             "end_time", "latency", "queuing_delay", "TTFT", "TPOT", "ITL"]
    assert sorted(int(r["request id"]) for r in rows) == list(range(100))
    trace = [json.loads(line) for line in (REPO / EXAMPLE).read_text().splitlines()]
    ends = [int(r["end_time"]) for r in rows]
    assert ends == sorted(ends), "rows are in completion order"
    for row in rows:
        req = trace[int(row["request id"])]
        itl = ast.literal_eval(row["ITL"])
        generated = int(row["output"]) - int(row["input"])
        assert generated == req["output_toks"] and int(row["input"]) == req["input_toks"]
        assert int(row["arrival"]) == req["arrival_time_ns"]
        assert int(row["latency"]) == int(row["end_time"]) - int(row["arrival"])
        assert len(itl) == generated - 1
        assert int(row["TTFT"]) + sum(itl) == int(row["latency"])
        expected_tpot = (int(row["latency"]) - int(row["TTFT"])) // (generated - 1) \
            if generated > 1 else 0
        assert int(row["TPOT"]) == expected_tpot
        assert 0 <= int(row["queuing_delay"]) <= int(row["TTFT"])


def test_stdout_parses_with_the_existing_evaluation_regexes(default_run):
    stdout, out, tmp = default_run
    assert re.search(r"Total simulation time:\s*(\d+)h\s+(\d+)m\s+([0-9.]+)s", stdout)
    generated = int(re.search(r"Total generated tokens:\s+(\d+)", stdout).group(1))
    rows = read_rows(out)
    assert generated == sum(int(r["output"]) - int(r["input"]) for r in rows)
    line = next(x for x in stdout.splitlines() if x.startswith("Throughput per 1.0 sec:"))
    windows = ast.literal_eval(line.split(":", 1)[1].strip())
    blocks = re.findall(r"^\[(\d+\.?\d*)s\] Avg prompt throughput:.*?generation throughput:"
                        r"\s*(\d+\.?\d*)", stdout, flags=re.M)
    assert len(blocks) == len(windows) > 0
    assert [float(g) for _, g in blocks] == [g for _, g in windows]
    total_ns = int(re.search(r"Total clocks \(ns\):\s+(\d+)", stdout).group(1))
    assert len(windows) == -(-total_ns // 1_000_000_000) - 1
    assert re.search(r"Instance\[0\].*?Each NPU Memory Usage\s+([\d.]+)\s+MB\s+\(([\d.]+)\s+% "
                     r"Used\)", stdout)
    assert re.search(r"Mean TPOT \(ms\):\s+([\d.]+)", stdout)
    assert "\x1b" not in stdout
    metrics = json.loads((tmp / "m.json").read_text())
    assert metrics["total_generated_tokens"] == generated
    assert metrics["total_clocks_ns"] == total_ns


def _token_times(row: dict) -> list[int]:
    t = int(row["arrival"]) + int(row["TTFT"])
    times = [t]
    for gap in ast.literal_eval(row["ITL"]):
        t += gap
        times.append(t)
    return times


def test_windows_count_every_token_produced_before_the_last_window_end(default_run):
    stdout, out, tmp = default_run
    series = (tmp / "out_throughput.csv").read_text().splitlines()
    assert series[0] == "time_s,prompt_tok_s,generation_tok_s"
    total_ns = int(re.search(r"Total clocks \(ns\):\s+(\d+)", stdout).group(1))
    last_window_end = (len(series) - 1) * 1_000_000_000
    assert last_window_end < total_ns <= last_window_end + 1_000_000_000
    in_windows = sum(1 for row in read_rows(out) for t in _token_times(row)
                     if t <= last_window_end)
    assert sum(float(line.split(",")[2]) for line in series[1:]) == in_windows


def test_same_command_twice_gives_identical_files(tmp_path):
    outs = []
    for k in range(2):
        out = tmp_path / f"run{k}.csv"
        run_ok([*DEFAULT, "--output", str(out), "--metrics-json", str(tmp_path / f"m{k}.json")])
        outs.append((out.read_bytes(), (tmp_path / f"run{k}_throughput.csv").read_bytes(),
                     (tmp_path / f"m{k}.json").read_bytes()))
    assert outs[0] == outs[1]


def test_tp2_and_two_instances_run(tmp_path):
    out = tmp_path / "tp2.csv"
    run_ok(["--cluster-config", "cluster_config/single_node_tp2_instance.json", *DEFAULT,
            "--output", str(out), "--num-req", "30"])
    assert len(read_rows(out)) == 30
    out2 = tmp_path / "multi.csv"
    stdout = run_ok(["--cluster-config", "cluster_config/single_node_multi_instance.json",
                     *DEFAULT, "--output", str(out2), "--num-req", "30"])
    rows = read_rows(out2)
    assert [r["instance id"] for r in rows] == sorted(r["instance id"] for r in rows)
    assert {int(r["request id"]) % 2 for r in rows if r["instance id"] == "1"} == {1}
    assert "Instance [1]" in stdout


@pytest.mark.parametrize("name", ["Qwen/Qwen3-32B", "Qwen/Qwen3-30B-A3B"])
def test_qwen3_runs_on_the_roofline_with_its_qk_norms(tmp_path, name):
    cluster = json.loads((REPO / "cluster_config/single_node_tp2_instance.json").read_text())
    instance = cluster["nodes"][0]["instances"][0]
    instance.update(model_name=name, hardware="H100")
    instance["npu_mem"].update(mem_size=80, mem_bw=3350)
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(cluster))
    trace = write_trace(tmp_path / "t.jsonl", [json.dumps(
        {"input_toks": 40 + i, "output_toks": 3, "arrival_time_ns": i * 1000}) for i in range(4)])
    out, chakra = tmp_path / "out.csv", tmp_path / "chakra"
    run_ok(["--cluster-config", str(path), "--dataset", str(trace), "--output", str(out),
            "--check-invariants", "--export-chakra", str(chakra)])
    assert len(read_rows(out)) == 4
    first = sorted(chakra.iterdir())[0]
    names = [node.name for node in read_et(first / "llm.0.et", CASYS_NUMBERING)[1]]
    # One per-head q/k norm per layer, between the projections and rope.
    layers = load_model_config(name, MODEL_CONFIG_DIR).num_layers
    assert sum("qk_norm" in n for n in names) == layers


REFERENCE = DATA / "reference_sim/examples/sharegpt_req100_rate10_llama_A6000_single.csv"


@needs_data
def test_matches_the_existing_simulator_on_its_own_inputs(tmp_path):
    out = tmp_path / "ours.csv"
    run_ok(["--cluster-config", str(DATA / "cluster_config/single_node_single_instance.json"),
            "--dataset", str(DATA / "datasets/sharegpt_req100_rate10_llama.jsonl"),
            "--perf-models", str(DATA / "perf_models"), "--num-req", "100",
            "--output", str(out)])
    ours, ref = read_rows(out), read_rows(REFERENCE)
    assert len(ours) == len(ref) == 100

    def total_ns(rows):
        return max(int(r["end_time"]) for r in rows)

    def mean_tpot(rows):
        return sum(int(r["TPOT"]) for r in rows) / len(rows)

    # Reference summary: 28.226 s simulated, mean TPOT 42.26 ms.
    assert total_ns(ref) == pytest.approx(28.226e9, rel=1e-3)
    assert total_ns(ours) == pytest.approx(total_ns(ref), rel=0.10)
    assert mean_tpot(ours) == pytest.approx(mean_tpot(ref), rel=0.10)


@needs_data
def test_calibrated_roofline_tracks_the_measured_profiles_on_sharegpt300(tmp_path):
    """The issue's bar: same run with the roofline model (no profiles) within 10 %, at the
    128-sequence cap the calibration was checked with."""
    results = {}
    (tmp_path / "no_profiles").mkdir()
    for name, root in (("measured", DATA / "perf_models"), ("roofline", tmp_path / "no_profiles")):
        out = tmp_path / f"{name}.csv"
        run_ok(["--cluster-config", str(DATA / "cluster_config/single_node_single_instance.json"),
                "--dataset", str(DATA / "datasets/sharegpt_req300_rate10_llama.jsonl"),
                "--perf-models", str(root), "--num-req", "300", "--output", str(out),
                "--max-num-seqs", "128"])
        rows = read_rows(out)
        assert len(rows) == 300
        results[name] = (max(int(r["end_time"]) for r in rows),
                         sum(int(r["TPOT"]) for r in rows) / len(rows))
    (total, tpot), (ref_total, ref_tpot) = results["roofline"], results["measured"]
    assert total != ref_total  # really two different latency sources
    assert total == pytest.approx(ref_total, rel=0.10)
    assert tpot == pytest.approx(ref_tpot, rel=0.10)
