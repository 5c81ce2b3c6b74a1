"""Fleet metrics: pooled latency percentiles, SLO attainment and goodput, summary and JSON."""

from __future__ import annotations

import re

import numpy as np
import pytest

from evaluation.console import parse_console
from inference_serving import simulate
from inference_serving.fleet import FleetSamples, Slo
from inference_serving.request import Request
from tests.conftest import REPO
from tests.test_cli_errors import run_main

MS = 1_000_000
PD = REPO / "cluster_config/single_node_pd_instance.json"
SINGLE = REPO / "cluster_config/single_node_single_instance.json"


def request(rid, arrival, scheduled, first, end, output, itl=()):
    """A finished request with hand-set times in ms."""
    r = Request(rid=rid, arrival=arrival * MS, prompt=8, output=output)
    r.first_scheduled, r.first_token, r.end = scheduled * MS, first * MS, end * MS
    r.generated = output
    r.itl = [g * MS for g in itl]
    return r


# (arrival, first scheduled, first token, end, output tokens, ITL gaps), all ms. Request 2
# has one output token: under P/D it finishes on its prefill instance and has no TPOT.
HAND_TRACE = [
    request(0, 0, 10, 100, 1100, 11),
    request(1, 0, 0, 50, 550, 6),
    request(2, 100, 120, 300, 300, 1),
    request(3, 200, 260, 400, 2400, 21),
    request(4, 300, 300, 320, 820, 11, itl=(40, 60)),
    request(5, 400, 500, 1000, 1500, 2, itl=(500,)),
]


def fleet_of(slo: Slo) -> dict:
    samples = FleetSamples(slo)
    for r in HAND_TRACE:
        samples.add(r)
    return samples.numbers(seconds=2.4)


def test_hand_trace_gives_the_hand_computed_percentiles():
    fleet = fleet_of(Slo())
    assert fleet["requests"] == 6
    # TTFT sorted 20 50 100 200 200 600: P90 at rank 4.5 = (200 + 600) / 2, P99 at 4.95.
    assert fleet["ttft"] == pytest.approx(
        {"mean_ms": 195, "median_ms": 150, "p90_ms": 400, "p99_ms": 580})
    # TPOT of the five multi-token requests: 50 100 100 100 500.
    assert fleet["tpot"] == pytest.approx(
        {"mean_ms": 170, "median_ms": 100, "p90_ms": 340, "p99_ms": 484})
    assert fleet["e2e"] == pytest.approx(
        {"mean_ms": 945, "median_ms": 825, "p90_ms": 1650, "p99_ms": 2145})
    assert fleet["queueing"] == pytest.approx(
        {"mean_ms": 190 / 6, "median_ms": 15, "p90_ms": 80, "p99_ms": 98})
    assert fleet["itl"] == pytest.approx(
        {"mean_ms": 200, "median_ms": 60, "p90_ms": 412, "p99_ms": 491.2})
    assert fleet["slo"] is None and fleet["slo_attainment_pct"] is None
    assert fleet["goodput_req_s"] is None


@pytest.mark.parametrize(("slo", "met"), [
    (Slo(ttft_ms=200, tpot_ms=100), 5),  # request 5 misses both; request 2 has no TPOT
    (Slo(ttft_ms=200, tpot_ms=100, e2e_ms=1000), 3),  # requests 0 and 3 also run too long
    (Slo(e2e_ms=199), 0),
])
def test_attainment_and_goodput_count_requests_meeting_every_objective(slo, met):
    fleet = fleet_of(slo)
    assert fleet["slo_attainment_pct"] == pytest.approx(met / 6 * 100)
    assert fleet["goodput_req_s"] == pytest.approx(met / 2.4)


def test_pd_run_counts_each_request_once_on_the_instance_that_finished_it():
    requests = [{"input_toks": 64 * (k + 1), "output_toks": 1 if k == 2 else 4 + 3 * k,
                 "arrival_time_ns": k * 20 * MS} for k in range(6)]
    results = simulate(PD, requests=requests, slo_ttft_ms=1000.0)
    fleet = results.summary["fleet"]
    finished_on = sorted(r.instance_id for r in results.requests)
    assert finished_on == [0, 1, 1, 1, 1, 1]  # the one-token request stays on the prefill side
    assert fleet["requests"] == 6
    ttft = np.array([r.ttft for r in results.requests]) / MS
    e2e = np.array([r.latency for r in results.requests]) / MS
    assert fleet["ttft"]["p90_ms"] == pytest.approx(np.percentile(ttft, 90))
    assert fleet["e2e"]["mean_ms"] == pytest.approx(e2e.mean())
    assert fleet["tpot"]["median_ms"] == pytest.approx(
        np.median([r.tpot / MS for r in results.requests if r.output - r.input > 1]))
    met = sum(r.ttft <= 1000 * MS for r in results.requests)
    assert fleet["slo_attainment_pct"] == pytest.approx(met / 6 * 100)
    seconds = results.summary["total_clocks_ns"] / 1e9
    assert fleet["goodput_req_s"] == pytest.approx(met / seconds)
    # The existing simulator prints no statistics for a P/D prefill instance.
    assert results.summary["instances"]["0"]["ttft"] is None
    assert results.summary["instances"]["1"]["ttft"] is not None


def test_summary_keeps_the_instance_blocks_and_adds_the_fleet_block_after_them(tmp_path):
    done = run_main(["--dataset", "dataset/example_trace.jsonl", "--cluster-config", str(PD),
                     "--slo-ttft-ms", "500", "--slo-e2e-ms", "4000", "--log-interval", "0.2"])
    assert done.returncode == 0, done.stderr
    out = done.stdout
    fleet_at = out.index("Fleet (all instances")
    assert out.rindex("Instance [1]") < fleet_at
    # The existing parsers' patterns still see exactly the per-instance lines.
    means = re.findall(r"Mean (TTFT|TPOT|ITL) \(ms\):\s+([\d.]+)", out)
    assert [m[0] for m in means] == ["TTFT", "TPOT", "ITL"]  # instance 1 only
    assert out.count("No TTFT data available") == 1  # the prefill instance
    assert re.search(r"TTFT P90 \(ms\):\s+[\d.]+", out[fleet_at:])
    assert re.search(r"SLO:\s+TTFT <= 500 ms, E2E <= 4000 ms", out)
    assert re.search(r"SLO attainment \(%\):\s+[\d.]+", out)
    assert re.search(r"Goodput \(req/s\):\s+[\d.]+", out)
    parsed = parse_console(out)
    assert set(parsed.instance_means_ms) == {0, 1} and parsed.instance_means_ms[0] == {}
    labels = dict(parsed.summary)
    assert "TTFT P90 (ms)" in labels and "Instance [1] TTFT P90 (ms)" not in labels


@pytest.mark.parametrize("value", ["0", "-5", "nan"])
def test_bad_slo_is_one_error_line(value):
    done = run_main(["--dataset", "dataset/example_trace.jsonl", "--slo-tpot-ms", value])
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: '--slo-tpot-ms' must be")
