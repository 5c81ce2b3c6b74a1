"""`python -m evaluation.compare`: identical runs exit 0, changed runs name what differs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from evaluation import compare as compare_module
from tests.conftest import REPO
from tests.test_cli_errors import run_main


def compare(a, b) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evaluation.compare", str(a), str(b)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same simulation twice: stems `a` and `b` (CSV + console log)."""
    root = tmp_path_factory.mktemp("runs")
    for stem in ("a", "b"):
        done = run_main(["--dataset", "dataset/example_trace.jsonl", "--num-req", "10",
                         "--output", str(root / f"{stem}.csv")])
        assert done.returncode == 0, done.stderr
        (root / f"{stem}.txt").write_text(done.stdout)
    return root


def test_identical_runs_exit_zero(two_runs):
    done = compare(two_runs / "a", two_runs / "b")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "identical"


def test_changed_run_names_the_request_and_summary_line(two_runs, tmp_path):
    csv_lines = (two_runs / "b.csv").read_text().splitlines()
    header = csv_lines[0].split(",")
    row = csv_lines[3].split(",")
    rid, end = row[header.index("request id")], int(row[header.index("end_time")])
    row[header.index("end_time")] = str(end + 1)
    csv_lines[3] = ",".join(row)
    (tmp_path / "c.csv").write_text("\n".join(csv_lines) + "\n")
    log = (two_runs / "b.txt").read_text()
    clocks = next(ln for ln in log.splitlines() if ln.startswith("Total clocks (ns):"))
    value = int(clocks.split()[-1])
    (tmp_path / "c.txt").write_text(log.replace(clocks, clocks.replace(str(value),
                                                                       str(value + 5))))
    done = compare(two_runs / "a", tmp_path / "c")
    assert done.returncode == 1
    assert "per-request: 1 request(s) differ" in done.stdout
    assert f"request {rid}: end_time {end} vs {end + 1}" in done.stdout
    assert f"Total clocks (ns): {value} vs {value + 5}" in done.stdout
    assert "summary: 1 line(s) differ" in done.stdout  # host wall time is not a difference


def test_missing_run_is_one_error_line(two_runs, tmp_path):
    done = compare(two_runs / "a", tmp_path / "nothing")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: no run files found")


def test_an_extra_column_differs_whichever_run_has_it(tmp_path):
    """The comparison is symmetric: a column only one run has is a difference both ways."""
    (tmp_path / "a.csv").write_text("instance id,request id\n0,0\n")
    (tmp_path / "b.csv").write_text("instance id,request id,extra\n0,0,1\n")
    a = compare_module.locate(str(tmp_path / "a"))
    b = compare_module.locate(str(tmp_path / "b"))
    assert compare_module.compare_runs(a, b) == ["per-request: 1 request(s) differ",
                                          "  request 0: extra (absent) vs 1"]
    assert compare_module.compare_runs(b, a) == ["per-request: 1 request(s) differ",
                                          "  request 0: extra 1 vs (absent)"]


def test_runs_with_different_files_are_named_plainly(two_runs, tmp_path):
    (tmp_path / "c.txt").write_text((two_runs / "b.txt").read_text())
    done = compare(two_runs / "a", tmp_path / "c")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: the two runs do not have the same files (a CSV and/or a log), "
        f"{two_runs / 'a.csv'} and {two_runs / 'a.txt'} against only {tmp_path / 'c.txt'}, "
        "compare runs that both have the same kinds of file"]


@pytest.mark.parametrize(("text", "message"), [
    ("request id,latency,latency\n0,1,2\n", "names column 'latency' twice"),
    ("request id,latency\n0,1\n00,1\n", "request id 0 appears twice (again on line 3)")])
def test_an_ambiguous_csv_is_one_error_line(two_runs, tmp_path, text, message):
    (tmp_path / "c.csv").write_text(text)
    (tmp_path / "c.txt").write_text((two_runs / "a.txt").read_text())
    done = compare(two_runs / "a", tmp_path / "c")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert message in done.stderr
