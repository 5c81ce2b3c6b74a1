"""`python -m evaluation.sweep`: the shipped spec, grid rows equal direct simulate() runs,
process pool and Ray give identical rows, the capacity search brackets the SLO boundary, and
every bad spec or flag is one error line with exit status 2 and no output."""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dataset.generate import generate_requests
from evaluation import sweep_plot
from evaluation.sweep import main
from evaluation.sweep_points import Point, point_requests
from evaluation.sweep_spec import Workload, load_spec
from inference_serving.api import simulate
from inference_serving.fleet import Slo
from tests.conftest import REPO

SHIPPED = REPO / "evaluation" / "sweeps" / "llama70b_8xh100_sweep.yaml"


def reduced(tmp: Path, **changes: object) -> Path:
    """The shipped spec with few requests (and `changes` at the top level), for speed."""
    spec = yaml.safe_load(SHIPPED.read_text())
    spec["workload"]["num_requests"] = 40
    spec.update(changes)
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def direct(cluster: dict, rate: float, spec_path: Path) -> dict:
    """The fleet block of one simulate() call at `rate`, built without the sweep's code."""
    spec = yaml.safe_load(spec_path.read_text())
    w = spec["workload"]
    reqs = list(generate_requests(w["num_requests"], rate, w["input"], w["output"],
                                  seed=spec["seed"], token_ids=False))
    return simulate(cluster, requests=reqs, num_req="all", seed=spec["seed"],
                    slo_ttft_ms=spec["slo"]["ttft_ms"], **spec["options"]).summary["fleet"]


def test_shipped_spec_is_three_8_gpu_configurations_at_four_rates():
    spec = load_spec(SHIPPED)
    shapes = [(c.name, c.settings["tp"], c.settings["instances"], c.settings["gpus"],
               c.settings["hardware"], c.settings["model"]) for c in spec.configurations]
    assert shapes == [("tp8x1", 8, 1, 8, "H100", "meta-llama/Llama-3.1-70B"),
                      ("tp4x2", 4, 2, 8, "H100", "meta-llama/Llama-3.1-70B"),
                      ("tp2x4", 2, 4, 8, "H100", "meta-llama/Llama-3.1-70B")]
    assert spec.rates == (10, 20, 30, 40)
    assert spec.slo == Slo(ttft_ms=2000) and spec.min_attainment_pct == 99
    # H100 from the catalogue: 80 GB, 3350 GB/s, NVLink 900 GB/s both ways = 450 one way.
    inst = spec.configurations[1].cluster["nodes"][0]["instances"][0]
    assert inst["npu_mem"]["mem_size"] == 80 and inst["npu_mem"]["mem_bw"] == 3350
    assert spec.configurations[1].cluster["link_bw"] == 450
    assert (inst["npu_num"], inst["npu_group"], inst["pd_type"]) == (4, 1, None)


@pytest.fixture(scope="module")
def pool_run(tmp_path_factory) -> tuple[Path, Path]:
    """The reduced shipped spec swept by a pool of two processes: (spec, rows CSV)."""
    tmp = tmp_path_factory.mktemp("pool")
    spec_path = reduced(tmp)
    assert main([str(spec_path), "--out", str(tmp / "rows.csv"), "--jobs", "2"]) == 0
    return spec_path, tmp / "rows.csv"


def test_grid_rows_equal_direct_runs_and_are_deterministic(pool_run, tmp_path):
    spec_path, out = pool_run
    rows = read_rows(out)
    assert [(r["config"], float(r["rate_req_s"])) for r in rows] == [
        (c, r) for c in ("tp8x1", "tp4x2", "tp2x4") for r in (10, 20, 30, 40)]
    spec = load_spec(spec_path)
    for row in rows:
        assert row["gpus"] == "8" and row["finished"] == "40" and row["seed"] == "42"
        assert float(row["goodput_per_gpu"]) == pytest.approx(float(row["goodput_req_s"]) / 8)
        assert row["meets_slo"] == str(float(row["slo_attainment_pct"]) >= 99)
    # Two points recomputed with the generator and simulate() directly.
    for k in (1, 11):
        config = spec.configurations[k // 4]
        fleet = direct(config.cluster, spec.rates[k % 4], spec_path)
        assert float(rows[k]["ttft_p99_ms"]) == pytest.approx(fleet["ttft"]["p99_ms"], rel=1e-9)
        assert float(rows[k]["e2e_mean_ms"]) == pytest.approx(fleet["e2e"]["mean_ms"], rel=1e-9)
        assert float(rows[k]["slo_attainment_pct"]) == fleet["slo_attainment_pct"]
    # The Pareto plot is a PNG; same spec and seed give the same bytes in one process too.
    assert (out.parent / "rows_pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = tmp_path / "again.csv"
    assert main([str(spec_path), "--out", str(again), "--jobs", "1", "--no-plot"]) == 0
    assert again.read_bytes() == out.read_bytes()


@pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                    reason="Ray is not installed: the [ray] extra is absent "
                    "(./compile.sh ray or pip install 'llmservingsim-py[ray]')")
def test_ray_rows_identical_to_process_pool(pool_run, tmp_path):
    spec_path, pool = pool_run
    ray = tmp_path / "ray.csv"
    assert main([str(spec_path), "--out", str(ray), "--jobs", "2", "--ray", "--no-plot"]) == 0
    assert len(read_rows(ray)) == 12
    assert ray.read_bytes() == pool.read_bytes()


def test_capacity_brackets_the_slo_boundary(tmp_path, capsys):
    spec_path = reduced(tmp_path, slo={"ttft_ms": 250, "min_attainment_pct": 99},
                        capacity={"target_rate": 50, "tolerance": 4, "max_rate": 256})
    out = tmp_path / "cap.csv"
    assert main([str(spec_path), "--out", str(out), "--jobs", "2", "--capacity",
                 "--no-plot"]) == 0
    caps = read_rows(tmp_path / "cap_capacity.csv")
    assert [c["config"] for c in caps] == ["tp8x1", "tp4x2", "tp2x4"]
    spec = load_spec(spec_path)
    for config, cap in zip(spec.configurations, caps, strict=True):
        below, above = float(cap["capacity_req_s"]), float(cap["fails_at_req_s"])
        assert 0 < above - below <= 4
        assert direct(config.cluster, below, spec_path)["slo_attainment_pct"] >= 99
        assert direct(config.cluster, above, spec_path)["slo_attainment_pct"] < 99
    # Every configuration has 8 GPUs: the cheapest carrying 50 req/s is the highest capacity.
    able = [c for c in caps if float(c["capacity_req_s"]) >= 50]
    best = max(able, key=lambda c: float(c["capacity_req_s"]))["config"]
    assert f"cheapest configuration carrying 50 req/s: {best} (8 GPUs" in capsys.readouterr().out
    probes = read_rows(out)
    assert sum(int(c["probes"]) for c in caps) == len(probes)


def test_list_values_expand_into_a_grid(tmp_path):
    spec = tmp_path / "grid.yaml"
    spec.write_text(BASE.replace("{model: meta-llama/Llama-3.1-8B, hardware: A6000}",
                                 "{name: pd, model: meta-llama/Llama-3.1-8B, hardware: A6000, "
                                 "tp: [1, 2], pd: ['1:1', '1:3']}")
                    + "options: {scheduler: [vllm, legacy], max_num_seqs: 64}\n")
    loaded = load_spec(spec)
    assert [c.name for c in loaded.configurations] == [
        f"pd-tp={tp}-pd={pd} scheduler={s}" for tp in (1, 2) for pd in ("1:1", "1:3")
        for s in ("vllm", "legacy")]
    assert [(c.settings["tp"], c.settings["prefill"], c.settings["decode"], c.settings["gpus"])
            for c in loaded.configurations[::2]] == [(1, 1, 1, 2), (1, 1, 3, 4), (2, 1, 1, 4),
                                                     (2, 1, 3, 8)]
    assert loaded.configurations[1].options == {"scheduler": "legacy", "max_num_seqs": 64}
    assert loaded.option_names == ("scheduler", "max_num_seqs")


def test_trace_retimed_proportionally(tmp_path):
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(f'{{"input_toks": {10 + i}, "output_toks": 5, '
                             f'"arrival_time_ns": {i * i * 10**8}}}\n' for i in range(5)))
    point = Point("c", {}, {}, 2.0, 1, Workload(5, None, None, trace, "scale", 1.0, 2048),
                  ((10, 5, 0), (11, 5, 10**8), (12, 5, 4 * 10**8), (13, 5, 9 * 10**8),
                   (14, 5, 16 * 10**8)), Slo(ttft_ms=1))
    # Span 1.6 s over 4 gaps = mean gap 0.4 s; at 2 req/s it becomes 0.5 s: times x 1.25.
    assert [r["arrival_time_ns"] for r in point_requests(point)] == [
        0, 125_000_000, 500_000_000, 1_125_000_000, 2_000_000_000]
    assert [r["input_toks"] for r in point_requests(point)] == [10, 11, 12, 13, 14]
    poisson = [Point("c", {}, {}, rate, 1, Workload(5, None, None, trace, "poisson", 1.0, 2048),
                     point.trace, Slo(ttft_ms=1)) for rate in (1.0, 4.0)]
    slow, fast = ([r["arrival_time_ns"] for r in point_requests(p)] for p in poisson)
    assert all(abs(s / 4 - f) <= 1 for s, f in zip(slow, fast, strict=True))
    assert slow == sorted(slow) and slow[0] > 0


def test_pareto_front():
    points = [(100, 1.0), (50, 0.5), (200, 2.0), (150, 0.9), (50, 0.4), (300, 1.5)]
    assert sweep_plot.pareto_front(points) == [1, 0, 2]


SPEC_ERRORS = {
    "unknown top-level key": ("rates: [1]\nrate: [2]\n", "unknown key 'rate'"),
    "typo in a cluster key": ("clusters:\n  - {model: m, hardware: H100, tpp: 2}\n",
                              "did you mean 'tp'?"),
    "duplicate key": ("seed: 1\nseed: 2\n", "key 'seed' appears twice"),
    "negative rate": ("rates: [-1]\n", "'rates[0]' must be a number in [1e-09, 1e+06] req/s"),
    "zero tp": ("clusters:\n  - {model: meta-llama/Llama-3.1-8B, hardware: A6000, tp: 0}\n",
                "'clusters[0].tp' must be an integer in [1, 64]"),
    "empty rate list": ("rates: []\n", "'rates' is an empty list"),
    "seed as an option": ("options: {seed: 3}\n", "option 'seed' is set by the sweep"),
    "output as an option": ("options: {output: x.csv}\n", "option 'output' writes or prints"),
    "unknown option": ("options: {max_num_seq: 3}\n", "did you mean 'max_num_seqs'?"),
    "bad option value": ("options: {scheduler: [vllm, fifo]}\n", "option scheduler got 'fifo'"),
    "no objective": ("slo: {min_attainment_pct: 90}\n", "no latency objective set"),
    "pd with instances": ("clusters:\n  - {model: meta-llama/Llama-3.1-8B, hardware: A6000, "
                          "pd: '1:1', instances: 2}\n", "'instances' and 'pd' both set"),
    "bad pd": ("clusters:\n  - {model: meta-llama/Llama-3.1-8B, hardware: A6000, pd: 2}\n",
               "must be 'P:D'"),
    "cv without gamma": ("workload: {num_requests: 5, cv: 2}\n", "only with arrival gamma"),
    "scale without trace": ("workload: {num_requests: 5, arrival: scale}\n",
                            "arrival 'scale' re-times a trace"),
    "missing trace": ("workload: {num_requests: 5, trace: nope.jsonl}\n", "trace not found"),
    "bad length law": ("workload: {num_requests: 5, input: 'fixed:0'}\n",
                       "bad length distribution"),
    "unknown hardware": ("clusters:\n  - {model: meta-llama/Llama-3.1-8B, hardware: Z80}\n",
                         "unknown hardware 'Z80'"),
    "cost of absent hardware": ("cost: {H200: 3}\n", "unknown key 'H200'"),
    "same names": ("clusters:\n  - {name: a, model: meta-llama/Llama-3.1-8B, hardware: A6000}"
                   "\n  - {name: a, model: meta-llama/Llama-3.1-8B, hardware: A6000}\n",
                   "two configurations are named 'a'"),
    "not yaml": ("rates: [1\n", "not valid YAML"),
    "list as a key": ("? [a, b]\n: 1\n", "a key must be a name, got list"),
    "attainment above 100": ("slo: {ttft_ms: 100, min_attainment_pct: 120}\n",
                             "'slo.min_attainment_pct' must be a number in (0, 100] %"),
    "capacity bracket": ("capacity: {min_rate: 5, max_rate: 1}\n", "is not below max_rate"),
}

BASE = ("seed: 1\nslo: {ttft_ms: 1000}\nworkload: {num_requests: 4}\nrates: [1]\nclusters:\n"
        "  - {model: meta-llama/Llama-3.1-8B, hardware: A6000}\n")


def _spec_with(text: str) -> str:
    """BASE with the top-level keys `text` sets replaced (a duplicate key test keeps both)."""
    if text.startswith("seed: 1\nseed"):
        return BASE.replace("seed: 1\n", text)
    keys = {line.split(":")[0] for line in text.splitlines() if line and line[0] != " "}
    kept, skip = [], False
    for line in BASE.splitlines():
        if line and line[0] != " ":
            skip = line.split(":")[0] in keys
        if not skip:
            kept.append(line)
    return "\n".join(kept) + "\n" + text


@pytest.mark.parametrize("case", sorted(SPEC_ERRORS))
def test_bad_spec_is_one_error_line(tmp_path, capsys, case):
    text, expected = SPEC_ERRORS[case]
    spec = tmp_path / "bad.yaml"
    spec.write_text(_spec_with(text))
    out = tmp_path / "rows.csv"
    assert main([str(spec), "--out", str(out), "--no-plot", "--jobs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert str(spec) in err[0] or case in ("unknown hardware",)
    assert not out.exists()


def test_base_spec_of_the_error_cases_runs(tmp_path):
    spec = tmp_path / "good.yaml"
    spec.write_text(BASE)
    assert main([str(spec), "--out", str(tmp_path / "r.csv"), "--no-plot", "--jobs", "1"]) == 0
    assert len(read_rows(tmp_path / "r.csv")) == 1


def test_point_that_cannot_run_is_one_error_line(tmp_path, capsys):
    # Llama-3.1-70B in FP16 (141 GB of weights) does not fit one 80 GB H100.
    spec = tmp_path / "big.yaml"
    spec.write_text(BASE.replace("meta-llama/Llama-3.1-8B, hardware: A6000",
                                 "meta-llama/Llama-3.1-70B, hardware: H100"))
    out = tmp_path / "rows.csv"
    assert main([str(spec), "--out", str(out), "--no-plot", "--jobs", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert "sweep point H100-tp1pp1-x1 at 1 req/s" in err[0]
    assert not out.exists()


def test_bad_flags_are_one_error_line(tmp_path, capsys, monkeypatch):
    spec = tmp_path / "good.yaml"
    spec.write_text(BASE)
    out = str(tmp_path / "rows.csv")
    cases = [(["--jobs", "0"], "--jobs must be in 1..256"),
             (["--jobs", "100000"], "--jobs must be in 1..256"),
             (["--ray", "127.0.0.1:9", "--no-plot"], "no Ray cluster answers at 127.0.0.1:9"),
             (["--ray", "127.0.0.1:9", "--jobs", "2"], "--jobs has no effect with --ray"),
             (["--plot", out], "two outputs would be written to the same file"),
             (["--plot", str(tmp_path)], "output path is a directory")]
    for flags, expected in cases:
        assert main([str(spec), "--out", out, *flags]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], (flags, err)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("matplotlib", "ray") else real(name, *a))
    assert main([str(spec), "--out", out]) == 2
    assert "matplotlib is not installed" in capsys.readouterr().err
    assert main([str(spec), "--out", out, "--ray", "--no-plot"]) == 2
    assert "Ray is not installed, --ray" in capsys.readouterr().err
    assert not Path(out).exists()


def test_command_line_error_has_no_traceback(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(BASE + "extra: 1\n")
    done = subprocess.run([sys.executable, "-m", "evaluation.sweep", str(spec), "--out",
                           str(tmp_path / "r.csv")], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: unknown key 'extra'") and done.stderr.count("\n") == 1
