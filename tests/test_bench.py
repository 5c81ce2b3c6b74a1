"""`python -m evaluation.bench`: our run beside real vLLM and the existing simulator."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evaluation.bench import existing_side, main, real_side, stat
from llmsim_core.errors import InputError
from tests.conftest import DATA, REPO, needs_data

BENCH = DATA / "vllm_bench"


def run_bench(folder: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evaluation.bench", str(folder), *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def table_row(stdout: str, label: str) -> list[str]:
    line = next(x for x in stdout.splitlines() if x.startswith(label))
    return line[len(label):].split()


@needs_data
def test_rtx4090_matches_real_vllm_as_closely_as_the_existing_simulator():
    """Real vLLM 0.19 ran with prefix caching on (meta.json), so ours does too: a preempted
    request's cached blocks are found again instead of recomputed. Our means are then no
    further from real vLLM than the existing simulator's +0.6 % (TTFT), +0.2 % (TPOT) and
    +0.5 % (latency), to the table's printed precision."""
    done = run_bench(BENCH / "RTX4090/Llama-3.1-8B")
    assert done.returncode == 0, done.stderr
    assert "prefix caching on" in done.stdout
    for metric in ("TTFT", "TPOT", "latency"):
        real, existing, existing_err, ours, ours_err = table_row(done.stdout,
                                                                 f"{metric} mean (ms)")
        # The existing simulator's published errors: +0.6 %, +0.2 %, +0.5 %.
        assert existing_err == {"TTFT": "+0.6%", "TPOT": "+0.2%", "latency": "+0.5%"}[metric]
        assert abs(float(ours) / float(real) - 1) <= float(existing_err.rstrip("%")) / 100 \
            + 0.0005, (metric, real, ours)


@needs_data
@pytest.mark.parametrize("model,bound", [("Llama-3.1-8B", 0.03), ("Qwen3-32B", 0.03)])
def test_rtxpro6000_dense_examples_follow_the_existing_simulator(model, bound):
    """Same profiles, engine limits (128 sequences, 2048 tokens) and prefix caching (on) as
    sim.log says: the means stay within 3 % of the existing simulator's (measured: TTFT
    −1.6 % and −0.2 %, TPOT +0.6 % and +1.3 %, latency 0.0 % and +0.7 %; the rest is the
    scheduler's admission order under preemption, which differs in details)."""
    done = run_bench(BENCH / "RTXPRO6000" / model)
    assert done.returncode == 0, done.stderr
    assert "engine limits from outputs/sim.log (max_num_seqs 128" in done.stdout
    for metric in ("TTFT", "TPOT", "latency"):
        existing, ours, _ = table_row(done.stdout, f"{metric} mean (ms)")
        assert abs(float(ours) / float(existing) - 1) <= bound, (metric, existing, ours)


@needs_data
def test_rtxpro6000_moe_example_runs_from_its_config():
    """DP2 × EP2 Qwen3-30B-A3B: each DP rank is one instance with half the experts; the DP
    group's lockstep and its expert all-gather / reduce-scatter are not modelled, so ours is
    faster. The bound only says the run is the same workload: every request completes and
    the makespan is within 25 % of the existing simulator's (measured −15 %)."""
    done = run_bench(BENCH / "RTXPRO6000/Qwen3-30B-A3B-Instruct-2507")
    assert done.returncode == 0, done.stderr
    existing, ours, _ = table_row(done.stdout, "makespan (s)")
    assert abs(float(ours) / float(existing) - 1) <= 0.25


@needs_data
def test_sides_read_the_same_definitions():
    real = real_side(BENCH / "RTX4090/Llama-3.1-8B/vllm", 300)
    existing = existing_side(BENCH / "RTX4090/Llama-3.1-8B/outputs")
    assert len(real.ms["TTFT"]) == len(existing.ms["TTFT"]) == 300
    # The existing simulator's published errors against this run.
    assert stat(existing.ms["TTFT"], None) / stat(real.ms["TTFT"], None) == \
        pytest.approx(1.006, abs=0.0006)
    assert len(real.generation) == len(real.running) == len(real.waiting) > 100


def test_a_missing_folder_is_one_error_line(tmp_path, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no such folder")


@needs_data
@pytest.mark.parametrize("rel,text,expected", [
    ("vllm/requests.jsonl", '{"queued_ts": 1}\n', "lacks queued_ts"),
    ("vllm/meta.json", "{not json", "unreadable JSON"),
    ("vllm/timeseries.csv", "t,gen\n1,2\n", "unreadable time series"),
    ("outputs/sim.csv", "instance id,TTFT\n0,x\n", "lacks an integer TTFT"),
    ("outputs/sim.csv", "arrival,end_time,latency,TTFT,TPOT\n5,9,4,2,1,7\n",
     "line 2 has more fields than the header"),
    ("outputs/sim.csv", "arrival,end_time,latency,TTFT,TPOT\n5,9,4,-2,1\n",
     "line 2 has a negative time or ends before it arrives"),
    ("outputs/sim.csv", "arrival,end_time,latency,TTFT,TPOT\n9,5,4,2,1\n",
     "line 2 has a negative time or ends before it arrives"),
    ("config.json", '{"num_nodes": 1}', "missing required key"),
    ("outputs/sim.csv", f"arrival,end_time,latency,TTFT,TPOT\n0,9,9,{'2' * 400},1\n",
     "has a time beyond"),
    ("outputs/sim.csv", "arrival,end_time,latency,TTFT,TPOT,TTFT\n0,9,9,2,1,3\n",
     "names column 'TTFT' twice"),
    ("vllm/timeseries.csv", "gen_throughput,running,waiting\n1_000,1,0\n",
     "unreadable time series"),
])
def test_bad_bench_files_give_one_error_line(tmp_path, rel, text, expected):
    data = tmp_path / "data"
    folder = data / "vllm_bench/RTX4090/Llama-3.1-8B"
    shutil.copytree(BENCH / "RTX4090/Llama-3.1-8B", folder)
    (data / "datasets_head").symlink_to(DATA / "datasets_head")
    (data / "perf_models_head").symlink_to(DATA / "perf_models_head")
    (folder / rel).write_text(text)
    done = run_bench(folder)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines


def test_meta_without_a_workload_is_refused(tmp_path, capsys):
    folder = tmp_path / "data/vllm_bench/X/M"
    (folder / "vllm").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "vllm/meta.json").write_text(json.dumps({"engine_kwargs": {}}))
    assert main([str(folder)]) == 2
    assert "lacks dataset_path" in capsys.readouterr().err


@pytest.mark.parametrize(("lines", "series", "message"), [
    (['{"queued_ts": -1e300, "first_token_ts": 1.0, "last_token_ts": 2.0, "output_toks": 2}'],
     "gen_throughput,running,waiting\n1,1,0\n", "epoch-second timestamps in [0, 1e+11]"),
    (['{"queued_ts": 1.0, "first_token_ts": 1.5, "last_token_ts": 2.0, "output_toks": 2}'],
     "gen_throughput,running,waiting\n1,1,0\n", "1 requests where the example ran 2"),
    (['{"queued_ts": 1.0, "first_token_ts": 1.5, "last_token_ts": 2.0, "output_toks": 2}'] * 2,
     "gen_throughput,running,waiting\n", "the time series has no rows")])
def test_a_real_run_that_cannot_be_the_example_is_refused(tmp_path, lines, series, message):
    (tmp_path / "requests.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "timeseries.csv").write_text(series)
    with pytest.raises(InputError, match=re.escape(message)):
        real_side(tmp_path, 2)


def test_a_status_line_with_a_malformed_number_is_not_a_status_block(tmp_path):
    (tmp_path / "sim.csv").write_text("arrival,end_time,latency,TTFT,TPOT\n0,9,9,2,1\n")
    (tmp_path / "sim.log").write_text(
        "[1.0s] Avg prompt throughput: 1.0 tokens/s, Avg generation throughput: 1.2.3 tokens/s\n"
        "[2.0s] Avg prompt throughput: 1.0 tokens/s, Avg generation throughput: 7.5 tokens/s\n")
    assert existing_side(tmp_path).generation == [7.5]
