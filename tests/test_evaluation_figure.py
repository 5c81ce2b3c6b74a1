"""`python -m evaluation.figure`: panels show exactly the runs' outputs; missing features skip."""

from __future__ import annotations

import csv
import importlib.util
import statistics

import pytest

from evaluation import figure, series
from evaluation.console import parse_console
from evaluation.figure import FigureResult, main, reproduce
from evaluation.runner import simulator_flags
from tests.conftest import DATA, needs_data

HAS_MPL = importlib.util.find_spec("matplotlib") is not None
NUM_REQ = 40  # the first 40 requests of each trace keep a figure to a few seconds


def panel(result, title):
    return next(p for p in result.panels if p.title == title)


@needs_data
def test_figure_5_panels_equal_the_runs_throughput(tmp_path, capsys):
    (result,) = reproduce([5], DATA, tmp_path, None, NUM_REQ, draw=HAS_MPL)
    out = capsys.readouterr().out
    for hw in ("A6000", "H100"):
        for run in ("MD", "PDD", "SM"):
            # The simulator's own throughput CSV (not the console) is the independent truth.
            with (tmp_path / f"figure_5/{hw}/results/{run}_throughput.csv").open() as handle:
                own = [float(r["generation_tok_s"]) for r in csv.DictReader(handle)]
            xs, ys = panel(result, f"{hw} {run}_throughput: throughput").lines["ours"]
            assert ys == [0.0, *own[:len(ys) - 1]] and len(ys) >= 5
            assert xs == list(map(float, range(len(ys))))
            ref = series.read_tsv(DATA / f"reference_sim/figure_5/{hw}/parsed/"
                                  f"{run}_throughput.tsv")
            assert panel(result, f"{hw} {run}_throughput: throughput").lines[
                "existing simulator"] == (ref["time_s"], ref["throughput"])
            assert f"figure_5/{hw}/{run}_throughput" in out and "throughput WAPE %" in out
    if "--enable-prefix-caching" not in simulator_flags():
        assert "figure 5 A6000/SD+PC: skipped, needs prefix caching (this simulator does not " \
               "accept --enable-prefix-caching)" in result.notices
        assert not (tmp_path / "figure_5/A6000/logs/SD+PC_output.txt").exists()
    if HAS_MPL:
        assert (tmp_path / "figure_5/figure_5.png").stat().st_size > 10_000
        assert (tmp_path / "figure_5/figure_5.svg").read_text().count("<svg") == 1


def instance_means(rows, column):
    by_instance = {}
    for r in rows:
        by_instance.setdefault(r["instance id"], []).append(int(r[column]) / 1e6)
    return statistics.fmean(statistics.fmean(v) for v in by_instance.values())


@needs_data
def test_figure_8_bars_equal_the_runs_outputs(tmp_path, capsys):
    (result,) = reproduce([8], DATA, tmp_path, None, NUM_REQ, draw=False)
    capsys.readouterr()
    for run in ("SD", "MD", "SM"):
        with (tmp_path / f"figure_8/results/{run}_result.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == NUM_REQ
        generated = sum(int(r["output"]) - int(r["input"]) for r in rows)
        tps = generated / (max(int(r["end_time"]) for r in rows) / 1e9)
        bars = panel(result, f"{run}_latency: throughput_tok_s").bars
        assert bars["ours"][0] == pytest.approx(tps, abs=0.01)  # printed with 2 decimals
        assert bars["existing simulator"] == series.read_tsv(
            DATA / f"reference_sim/figure_8/parsed/{run}_latency.tsv")["throughput_tok_s"]
        for col, stat in (("mean_ttft_ms", "TTFT"), ("mean_tpot_ms", "TPOT")):
            got = panel(result, f"{run}_latency: {col}").bars["ours"][0]
            assert got == pytest.approx(instance_means(rows, stat), abs=0.006), (run, col)
        log = parse_console((tmp_path / f"figure_8/logs/{run}_output.txt").read_text())
        assert panel(result, f"{run}_sim_time: simulation_time_s").bars["ours"] == \
            [pytest.approx(log.sim_time_s)]


@needs_data
def test_power_runs_write_the_power_series_and_component_energy(tmp_path, capsys):
    (result,) = reproduce([6], DATA, tmp_path, None, 5, draw=False)
    capsys.readouterr()
    assert not [n for n in result.notices if "skipped" in n], result.notices
    for tp in (1, 2):
        log = parse_console((tmp_path / f"figure_6/logs/power_output_tp{tp}.txt").read_text())
        power = series.read_tsv(tmp_path / f"figure_6/parsed/power_tp{tp}.tsv")["power_w"]
        assert power == log.power_w and len(power) > 5
        # The first second is idle (the pulse arrives at 1.0 s): the figure-6 idle plateau.
        idle = 387.6 if tp == 1 else 400.6
        assert power[0] == idle and min(power) == idle and max(power) > idle + 250
    energy = series.read_tsv(tmp_path / "figure_6/parsed/component_energy.tsv")
    assert len(energy["TP 1"]) == 7


def test_bad_arguments_are_one_line(tmp_path, capsys):
    assert main(["5", "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no artifact_configs/ folder") and err.count("\n") == 1
    assert main(["5", "--num-req", "0", "--data", str(tmp_path)]) == 2
    assert "--num-req must be > 0" in capsys.readouterr().err


def test_a_failed_run_ends_the_command_with_one_error_line(tmp_path, capsys, monkeypatch):
    failed = FigureResult(5, failures=["figure 5 A6000/SM (error: duplicate key 'num_nodes')"])
    monkeypatch.setattr(figure, "reproduce", lambda *args, **kwargs: [failed])
    data = tmp_path / "data"
    data.mkdir()
    assert main(["5", "--data", str(data), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: 1 run(s) failed, first figure 5 A6000/SM (error: duplicate key "
                   f"'num_nodes'), {data}, fix that run's config or data (every notice is "
                   "above) and run again"]
