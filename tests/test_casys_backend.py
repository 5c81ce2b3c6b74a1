"""`--network-backend external` in the casys dialect: the binary owns the clock (stdin/stdout)."""

from __future__ import annotations

import csv
import sys

import pytest

from inference_serving.casys_driver import casys_dims
from inference_serving.cluster_config import load_cluster_config
from tests.conftest import REPO
from tests.test_cli_errors import run_main


@pytest.fixture
def binary(tmp_path):
    path = tmp_path / "AnalyticalAstra"
    path.write_text(f"#!/bin/sh\nexec {sys.executable} {REPO / 'tests/fake_casys_astra.py'} "
                    "\"$@\"\n")
    path.chmod(0o755)
    return path


def ends(path):
    with path.open() as handle:
        return {r["request id"]: int(r["end_time"]) for r in csv.DictReader(handle)}


@pytest.mark.parametrize("config", ["single_node_single_instance.json",
                                    "single_node_tp2_instance.json",
                                    "single_node_multi_instance.json"])
def test_casys_protocol_run_tracks_the_analytical_run(tmp_path, binary, config):
    common = ["--cluster-config", f"cluster_config/{config}", "--dataset",
              "dataset/example_trace.jsonl", "--num-req", "6", "--log-interval", "0.2"]
    ours, theirs = tmp_path / "ours.csv", tmp_path / "theirs.csv"
    assert run_main([*common, "--output", str(ours)]).returncode == 0
    done = run_main([*common, "--output", str(theirs), "--network-backend", "external",
                     "--astra-sim-bin", str(binary)])
    assert done.returncode == 0, done.stderr
    a, b = ends(ours), ends(theirs)
    assert a.keys() == b.keys() and len(a) == 6
    # The binary detects arrivals on an idle cluster in 1 ms steps, which shifts start times and
    # so batch compositions a little: each completion stays within a few ms.
    for rid in a:
        assert abs(b[rid] - a[rid]) <= 5_000_000 + a[rid] // 40


def test_casys_network_dimensions_follow_the_existing_simulator():
    def sizes(name):
        return [d.npus for d in casys_dims(load_cluster_config(REPO / "cluster_config" / name))]

    assert sizes("single_node_single_instance.json") == [1]
    assert sizes("single_node_tp2_instance.json") == [2]
    assert sizes("single_node_multi_instance.json") == [1, 2]
    assert sizes("single_node_single_instance_H100.json") == [4]


def test_power_with_the_casys_driver_warns_that_only_static_energy_is_counted(tmp_path, binary):
    done = run_main(["--cluster-config", "cluster_config/single_node_power_instance.json",
                     "--dataset", "dataset/example_trace.jsonl", "--num-req", "4",
                     "--log-interval", "0.2", "--network-backend", "external",
                     "--astra-sim-bin", str(binary), "--check-invariants"])
    assert done.returncode == 0, done.stderr
    warnings = [ln for ln in done.stderr.splitlines() if "WARNING" in ln]
    assert len(warnings) == 1 and "static and standby energy only" in warnings[0]
    assert "Power per 0.2 sec (W): [387.6" in done.stdout
