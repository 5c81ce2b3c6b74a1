"""`--plot-dir`: the PNG files and the series behind them."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from inference_serving import simulate
from inference_serving.cli import main
from inference_serving.output_paths import PLOT_FILES
from inference_serving.plots import PlotData, cdf, charts
from tests.conftest import REPO

EXAMPLE = "dataset/example_sharegpt_req100_rate10.jsonl"
MULTI = REPO / "cluster_config/single_node_multi_instance.json"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def plotted(tmp_path_factory):
    pytest.importorskip("PIL")
    folder = tmp_path_factory.mktemp("plots")
    captured = []  # the run builds its PlotData itself; keep it for the series tests
    original = PlotData.on_finish

    def keep(self, result):
        captured.append(self)
        original(self, result)

    PlotData.on_finish = keep
    try:
        results = simulate(MULTI, dataset=EXAMPLE, num_req=60, plot_dir=folder / "png")
    finally:
        PlotData.on_finish = original
    return folder / "png", results, captured[0]


def test_plot_dir_holds_every_listed_png(plotted):
    folder, _, _ = plotted
    assert sorted(p.name for p in folder.iterdir()) == sorted(PLOT_FILES)
    for name in PLOT_FILES:
        assert (folder / name).read_bytes()[:8] == PNG


def test_throughput_series_is_the_log_windows(plotted):
    _, results, data = plotted
    assert list(data.times_s) == [w.time_s for w in results.windows]
    assert list(data.prompt_tok_s) == [w.prompt_tok_s for w in results.windows]
    assert list(data.generation_tok_s) == [w.generation_tok_s for w in results.windows]


def test_ttft_cdf_is_the_sorted_csv_ttft(plotted):
    _, results, data = plotted
    values, fractions = cdf(data.fleet.samples["ttft"])
    assert values.tolist() == sorted(r.ttft / 1e6 for r in results.requests)
    assert fractions[0] == 1 / 60 and fractions[-1] == 1.0


def test_queue_and_memory_series_have_one_column_per_instance(plotted):
    _, results, data = plotted
    running = data.per_instance(data.running)
    assert running.shape == (len(results.windows), 2)
    memory = data.per_instance(data.memory)
    assert (memory > 0).all()  # the weights are always resident
    assert np.diff(memory[:, 0]).any()  # KV use changes over the run


def test_pngs_are_reproducible_and_ticks_are_round(plotted):
    from inference_serving.chart import nice_ticks  # needs Pillow, like the fixture

    _, _, data = plotted
    assert charts(data) == charts(data)
    assert nice_ticks(0, 17) == [0, 5, 10, 15, 20]
    assert nice_ticks(0.013, 0.98) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert nice_ticks(15300, 17400) == [15000, 15500, 16000, 16500, 17000, 17500]


def test_without_pillow_plot_dir_is_one_error_line(monkeypatch, capsys, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "PIL" else real(name, *a))
    status = main(["--dataset", EXAMPLE, "--num-req", "5", "--plot-dir", str(tmp_path / "p")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("error: Pillow is not installed, "
                                                   "--plot-dir, pip install")
    assert not (tmp_path / "p").exists()
