"""§4 metrics and the `--real` comparison on hand-made series with hand-checked values."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from evaluation import diff, metrics, series
from evaluation.figure import FigureResult, compare_tsv


def write(path, header, rows):
    series.write_tsv(path, (tuple(header), rows))


def test_series_metrics_by_hand():
    ours = {0.0: 0.0, 1.0: 100.0, 2.0: 200.0, 3.0: 0.0}
    real = {0.0: 0.0, 1.0: 110.0, 2.0: 180.0, 4.0: 10.0}
    # outer join, t >= 1: |100-110| + |200-180| + 0 + |0-10| = 40 over 110 + 180 + 10 = 300
    assert metrics.wape(ours, real) == pytest.approx(40 / 300 * 100)
    # bins with real > 0: 10/110, 20/180, 10/10
    assert metrics.mape(ours, real) == pytest.approx((10 / 110 + 20 / 180 + 1) / 3 * 100)
    assert (metrics.makespan(ours), metrics.makespan(real)) == (2.0, 4.0)
    # inner join drops t = 3 and t = 4
    assert metrics.inner_mape(ours, real, 1.0) == pytest.approx((10 / 110 + 20 / 180) / 2 * 100)
    assert metrics.growth_wape({0.0: 15.0, 1.0: 17.0}, {0.0: 14.0, 1.0: 18.0}) == 50.0
    assert metrics.geomean([25.0, 20.0, 25.0]) == pytest.approx(12500 ** (1 / 3))
    assert math.isnan(metrics.plateau_mean(ours))  # nothing in 10 <= t < 30


def test_latency_table_picks_the_vllm_row():
    ours = {"throughput_tok_s": [1000.0], "mean_ttft_ms": [50.0], "mean_tpot_ms": [20.0]}
    real = {"framework": ["TokenSim", "vLLM"], "throughput_tok_s": [1.0, 800.0],
            "mean_ttft_ms": [1.0, 40.0], "mean_tpot_ms": [1.0, 25.0]}
    assert [(m, e) for m, _, _, e in diff.compare(ours, real)] == [
        ("throughput_tok_s", 25.0), ("mean_ttft_ms", 25.0), ("mean_tpot_ms", 20.0)]


def errors(lines):
    found = {}
    for line in lines:
        if m := re.search(r"vs real: (.+?)\s+ours err\s+(\S+)\s+existing err (\S+)", line):
            found[m[1]] = (m[2], m[3])
    return found


def test_real_folder_gives_hand_checked_errors_for_both_simulators(tmp_path):
    out, data, real = tmp_path / "out", tmp_path / "data", tmp_path / "real"
    rel = "figure_9/parsed/SD_throughput.tsv"
    write(out / rel, ("time_s", "throughput"), [(0, 0.0), (1, 100.0), (2, 200.0), (3, 0.0)])
    write(data / "reference_sim" / rel, ("time_s", "throughput"),
          [(0, 0.0), (1, 110.0), (2, 170.0), (3, 0.0), (4, 10.0)])
    write(real / "figure_9/reference/SD_throughput.tsv", ("time_s", "throughput"),
          [(0, 0.0), (1, 110.0), (2, 180.0), (4, 10.0)])
    lat = "figure_9/parsed/SD_latency.tsv"
    header = ("throughput_tok_s", "mean_ttft_ms", "mean_tpot_ms", "mean_itl_ms")
    write(out / lat, header, [(1000.0, 50.0, 20.0, 25.0)])
    write(data / "reference_sim" / lat, header, [(800.0, 44.0, 30.0, 20.0)])
    write(real / "figure_9/reference/SD_latency.tsv", header, [(800.0, 40.0, 25.0, 20.0)])
    result = FigureResult(9)
    got = errors(compare_tsv(Path(rel), out, data, real, result) +
                 compare_tsv(Path(lat), out, data, real, result))
    assert got["throughput WAPE %"] == ("13.33", "3.333")  # 40/300 and 10/300
    assert got["throughput MAPE %"] == ("40.07", "1.852")  # existing: (0 + 10/180 + 0) / 3
    assert got["makespan s"] == ("-2", "0")
    assert got["throughput_tok_s"] == ("25", "0")
    assert got["mean_ttft_ms"] == ("25", "10")
    assert got["mean_tpot_ms"] == ("20", "20")
    assert got["mean_itl_ms"] == ("25", "0")
    assert got["geomean err % (TPS, TPOT, ITL)"] == ("23.21", "-")  # (25*20*25)^(1/3)
    lines = {p.title: p.lines for p in result.panels if p.lines}
    assert lines["SD_throughput: throughput"]["real"] == ([0.0, 1.0, 2.0, 4.0],
                                                          [0.0, 110.0, 180.0, 10.0])
