"""`--network-backend external`: a stand-in binary that speaks ASTRA-Sim's command line."""

from __future__ import annotations

import csv
import subprocess
import sys

from tests.conftest import REPO
from tests.test_cli_errors import run_main

FAKE_BINARY = """#!{python}
# Stand-in for AstraSim_Analytical_Congestion_Unaware: same flags, same report lines.
import sys
from astra_sim.__main__ import main

flags = dict(arg[2:].split("=", 1) for arg in sys.argv[1:])
sys.exit(main(["--workload", flags["workload-configuration"],
               "--network", flags["network-configuration"],
               "--system", flags["system-configuration"],
               "--memory", flags["remote-memory-configuration"], "--dialect", "upstream"]))
"""


def test_external_binary_times_match_the_in_process_engine(tmp_path):
    binary = tmp_path / "AstraSim_Analytical_Congestion_Unaware"
    binary.write_text(FAKE_BINARY.format(python=sys.executable))
    binary.chmod(0o755)
    common = ["--cluster-config", "cluster_config/single_node_tp2_instance.json",
              "--dataset", "dataset/example_trace.jsonl", "--num-req", "4"]
    ours, theirs = tmp_path / "ours.csv", tmp_path / "theirs.csv"
    assert run_main([*common, "--output", str(ours)]).returncode == 0
    done = run_main([*common, "--output", str(theirs), "--network-backend", "external",
                     "--astra-sim-bin", str(binary), "--astra-sim-dialect", "upstream"])
    assert done.returncode == 0, done.stderr
    with ours.open() as a, theirs.open() as b:
        end_ours = [int(r["end_time"]) for r in csv.DictReader(a)]
        end_theirs = [int(r["end_time"]) for r in csv.DictReader(b)]
    # Upstream traces carry whole microseconds: each of ~450 operators may lose < 1 µs.
    for x, y in zip(end_ours, end_theirs, strict=True):
        assert abs(x - y) / x < 0.02


def test_external_backend_needs_its_binary(tmp_path):
    done = run_main(["--dataset", "dataset/example_trace.jsonl", "--network-backend",
                     "external"])
    assert done.returncode == 2 and done.stderr.startswith("error: ")
    done = run_main(["--dataset", "dataset/example_trace.jsonl", "--network-backend",
                     "external", "--astra-sim-bin", str(tmp_path / "missing")])
    assert done.returncode == 2 and "not found" in done.stderr


def test_binary_failure_is_reported(tmp_path):
    binary = tmp_path / "broken"
    binary.write_text("#!/bin/sh\nexit 3\n")
    binary.chmod(0o755)
    done = subprocess.run([sys.executable, "main.py", "--dataset", "dataset/example_trace.jsonl",
                           "--network-backend", "external", "--astra-sim-bin", str(binary),
                           "--astra-sim-dialect", "upstream", "--no-progress"],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2 and "failed" in done.stderr


def test_a_binary_that_is_not_executable_or_prints_garbage_is_one_error_line(tmp_path):
    plain = tmp_path / "not_executable"
    plain.write_text("#!/bin/sh\necho hello\n")
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"#!/bin/sh\nprintf 'sys[0] finished, lots of cycles\\n\\377\\376'\n")
    garbage.chmod(0o755)
    for binary, expected in ((plain, "not executable"), (garbage, "failed")):
        done = run_main(["--dataset", "dataset/example_trace.jsonl", "--num-req", "2",
                         "--network-backend", "external", "--astra-sim-bin", str(binary),
                         "--astra-sim-dialect", "upstream", "--output",
                         str(tmp_path / "out.csv")])
        assert done.returncode == 2, done.stderr
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and expected in errors[0]
        assert "Traceback" not in done.stderr and not (tmp_path / "out.csv").exists()
