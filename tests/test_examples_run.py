"""`./run.sh examples`: one run per feature, each leaving its log and CSV."""

from __future__ import annotations

import csv
import subprocess
import sys

from examples.run_all import EXAMPLES
from tests.conftest import REPO


def test_chosen_examples_run_and_report(tmp_path):
    done = subprocess.run([sys.executable, "-m", "examples.run_all", "--only", "single,pd",
                           "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    table = {line.split()[0]: line.split() for line in done.stdout.splitlines()[1:-1]}
    assert sorted(table) == ["pd", "single"]
    for name in ("single", "pd"):
        with (tmp_path / f"{name}.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == 100
        # The table's simulated time is the last completion in the run's CSV.
        assert float(table[name][1]) == round(max(int(r["end_time"]) for r in rows) / 1e9, 3)
        assert "Simulation results" in (tmp_path / f"{name}.log").read_text()


def test_unknown_example_is_one_error_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "examples.run_all", "--only", "nope",
                           "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("error: unknown example(s) nope")
    assert len(EXAMPLES) == len({e.name for e in EXAMPLES})
