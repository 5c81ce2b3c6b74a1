"""Command-line usability: the --num-req note, --quiet and the defaults in --help."""

from __future__ import annotations

import json
import re

import pytest

from inference_serving import simulate
from tests.conftest import REPO
from tests.test_cli_errors import run_main

TRACE = "dataset/example_trace.jsonl"  # 10 requests
SINGLE = REPO / "cluster_config/single_node_single_instance.json"


def test_num_req_below_the_trace_length_prints_one_note(tmp_path):
    metrics = tmp_path / "m.json"
    done = run_main(["--dataset", TRACE, "--num-req", "4", "--metrics-json", str(metrics)])
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("note: --num-req 4 loads the first 4 requests of ")
    assert "--num-req all" in done.stderr
    assert json.loads(metrics.read_text())["total_requests"] == 4


@pytest.mark.parametrize("count", ["all", "0", "10", "50"])
def test_whole_trace_prints_no_note(tmp_path, count):
    metrics = tmp_path / "m.json"
    done = run_main(["--dataset", TRACE, "--num-req", count, "--metrics-json", str(metrics)])
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert json.loads(metrics.read_text())["total_requests"] == 10


def test_quiet_prints_only_the_final_summary():
    loud = run_main(["--dataset", TRACE, "--num-req", "4", "--log-interval", "0.1"])
    quiet = run_main(["--dataset", TRACE, "--num-req", "4", "--log-interval", "0.1", "--quiet"])
    assert quiet.returncode == loud.returncode == 0
    assert "Avg prompt throughput" in loud.stdout and loud.stderr
    assert quiet.stderr == ""
    assert quiet.stdout.startswith("-" * 80 + "\n▶ Simulation results...")
    summary = loud.stdout[loud.stdout.index("-" * 80 + "\n▶"):]
    # Equal apart from the host wall time line.
    strip = [line for line in summary.splitlines() if not line.startswith("Total simulation")]
    assert [line for line in quiet.stdout.splitlines()
            if not line.startswith("Total simulation")] == strip


def test_help_shows_defaults():
    done = run_main(["--help"])
    assert done.returncode == 0
    # One entry per option: the lines from "  --flag" to the next option.
    entries = {e.split()[0]: " ".join(e.split())
               for e in re.split(r"\n  (?=-)", done.stdout.split("options:")[1]) if e.strip()}
    for flag, default in (("--num-req", "100"), ("--log-interval", "0.5"), ("--seed", "42")):
        assert entries[flag].endswith(f"(default: {default})"), entries[flag]
    # Flags whose use alone is checked have no argparse default; their help names it.
    for flag, default in (("--max-num-seqs", "default: what --vllm-version picks"),
                          ("--trace-max-requests", "1000 if unset"),
                          ("--chakra-dialect", "casys (if unset")):
        assert default in entries[flag], entries[flag]
    assert "(default: None)" not in done.stdout and "(default: False)" not in done.stdout



@pytest.mark.parametrize(("count", "loaded"), [("all", 10), (0, 10), (3, 3)])
def test_api_takes_all_or_a_count(count, loaded):
    results = simulate(SINGLE, dataset=TRACE, num_req=count)
    assert len(results.requests) == loaded
    assert len(results.diagnostics) == (loaded < 10)  # the note that the trace was cut
