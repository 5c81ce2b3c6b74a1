"""Flat memory: the trace as a compact table, finished requests released, ITL gaps folded into
exact histograms past a bound, CSV rows streamed with the csv module's format."""

from __future__ import annotations

import csv
import gc
import io
import json
from types import SimpleNamespace

import numpy as np
import pytest

from inference_serving import gap_samples, outputs, simulate
from inference_serving.dataset_reader import load_requests
from inference_serving.gap_samples import GapHistogram, GapSamples
from inference_serving.observers import Observer
from inference_serving.outputs import CSV_COLUMNS, RequestCsv, RequestRecord
from inference_serving.request import Request
from tests.conftest import REPO

TRACE = REPO / "dataset/example_sharegpt_req100_rate10.jsonl"
MULTI = REPO / "cluster_config/single_node_multi_instance.json"


def gaps_ms(samples) -> np.ndarray:
    return np.asarray(samples, dtype=np.int64).astype(np.float64) / 1e6


@pytest.mark.parametrize("n", [1, 2, 3, 10, 101, 4000])
def test_histogram_order_statistics_equal_numpy(n):
    rng = np.random.default_rng(n)
    samples = rng.integers(1, 10**9, n)
    samples = np.concatenate((samples, samples[: n // 3]))  # repeated gaps, as in a run
    histogram = GapHistogram()
    half = samples.size // 2
    histogram.add(samples[:half])
    histogram.add(samples[half:])
    ms = gaps_ms(samples)
    assert histogram.size == samples.size
    assert histogram.total == int(samples.sum())
    for q in (50, 90, 99):
        assert histogram.percentile_ms(q) == np.percentile(ms, q)
    assert histogram.median_ms() == np.median(ms)
    assert histogram.mean_ms() == pytest.approx(ms.mean(), rel=1e-14)


def test_histogram_sum_is_exact_beyond_int64():
    histogram = GapHistogram()
    big = np.full(8, 2**62, dtype=np.int64)
    histogram.add(big)
    assert histogram.total == 8 * 2**62
    assert histogram.values.tolist() == [2**62] and histogram.counts.tolist() == [8]


def test_folded_samples_give_the_raw_statistics(monkeypatch):
    monkeypatch.setattr(gap_samples, "RAW_LIMIT", 50)
    monkeypatch.setattr(gap_samples, "FOLD_EVERY", 7)
    rng = np.random.default_rng(3)
    folded = GapSamples()
    per_instance: dict[int, list[int]] = {0: [], 2: []}
    for k in range(40):
        instance = 2 if k % 3 else 0
        gaps = rng.integers(1000, 1100, rng.integers(0, 6)).tolist()
        per_instance[instance] += gaps
        folded.add(instance, gaps)
    assert folded.folded is not None  # past the bound: histograms only, no raw gaps left
    assert len(folded.raw) == 0
    for instance, gaps in per_instance.items():
        ms = gaps_ms(gaps)
        mean, median, p99 = folded.instance_ms(instance)
        assert (median, p99) == (np.median(ms), np.percentile(ms, 99))
        assert mean == pytest.approx(ms.mean(), rel=1e-14)
    assert folded.instance_ms(1) is None
    pooled = gaps_ms(per_instance[0] + per_instance[2])
    mean, values = folded.fleet_ms((50, 90, 99))
    assert values == [np.percentile(pooled, q) for q in (50, 90, 99)]
    assert mean == pytest.approx(pooled.mean(), rel=1e-14)


def test_a_run_past_the_raw_bound_reports_the_same_itl(monkeypatch):
    kwargs = {"num_req": 60, "request_routing_policy": "RR"}
    exact = simulate(MULTI, TRACE, **kwargs).summary
    monkeypatch.setattr(gap_samples, "RAW_LIMIT", 500)
    monkeypatch.setattr(gap_samples, "FOLD_EVERY", 300)
    folded = simulate(MULTI, TRACE, **kwargs).summary
    for block in (*(folded["instances"][k]["itl"] for k in ("0", "1")), folded["fleet"]["itl"]):
        assert block is not None
    for key in ("0", "1"):
        ours, theirs = folded["instances"][key]["itl"], exact["instances"][key]["itl"]
        assert (ours["median_ms"], ours["p99_ms"]) == (theirs["median_ms"], theirs["p99_ms"])
        assert ours["mean_ms"] == pytest.approx(theirs["mean_ms"], rel=1e-14)
    ours, theirs = folded["fleet"]["itl"], exact["fleet"]["itl"]
    assert {k: ours[k] for k in ("median_ms", "p90_ms", "p99_ms")} == \
        {k: theirs[k] for k in ("median_ms", "p90_ms", "p99_ms")}
    assert ours["mean_ms"] == pytest.approx(theirs["mean_ms"], rel=1e-14)
    # Everything but the ITL means is unchanged.
    for summary in (folded, exact):
        summary["fleet"]["itl"].pop("mean_ms")
        for key in ("0", "1"):
            summary["instances"][key]["itl"].pop("mean_ms")
    assert folded == exact


def live_requests() -> int:
    gc.collect()
    return sum(type(o) is Request for o in gc.get_objects())


def test_finished_requests_are_released_and_made_only_on_arrival():
    class Watch(Observer):
        def __init__(self) -> None:
            self.live: list[int] = []

        def on_batch_end(self, inst, batch, end_ns, finished) -> None:
            if len(self.live) < 3:
                self.live.append(live_requests())

    watch = Watch()
    before = live_requests()
    results = simulate(MULTI, TRACE, num_req=100, observers=[watch])
    assert len(results.requests) == 100
    # The first iterations end after a few arrivals: the later requests do not exist yet.
    assert all(0 < live - before < 10 for live in watch.live), watch.live
    assert live_requests() == before  # every finished request was let go


def test_the_table_sorts_stably_and_keeps_line_ids(tmp_path):
    path = tmp_path / "t.jsonl"
    arrivals = [30, 10, 20, 10, 0]
    path.write_text("".join(json.dumps({"input_toks": 5 + k, "output_toks": 2,
                                        "arrival_time_ns": a}) + "\n"
                            for k, a in enumerate(arrivals)) + "\n")
    table, unsorted = load_requests(path, 10)
    assert unsorted
    assert table.rid.tolist() == [4, 1, 3, 2, 0]
    assert table.arrival.tolist() == [0, 10, 10, 20, 30]
    assert table.prompt.tolist() == [9, 6, 8, 7, 5]
    assert [(r.rid, r.arrival, r.prompt, r.output) for r in table] == \
        [(4, 0, 9, 2), (1, 10, 6, 2), (3, 10, 8, 2), (2, 20, 7, 2), (0, 30, 5, 2)]
    assert sum(c.nbytes for c in (table.rid, table.arrival, table.prompt, table.output)) == \
        5 * 32


@pytest.mark.parametrize("linkable", [True, False])
@pytest.mark.parametrize("model", ["org/plain-name", 'org/odd,name "q"'])
def test_streamed_rows_equal_the_csv_module(tmp_path, monkeypatch, model, linkable):
    def finished(rid, output, itl, instance):
        r = Request(rid=rid, arrival=100, prompt=7, output=output)
        r.instance, r.routed_instance = instance, 0
        r.first_scheduled, r.first_token, r.generated = 150, 300, output
        r.itl = itl
        r.end = r.first_token + sum(itl)
        return r

    if not linkable:  # platforms without unnamed files that can be linked: copied instead
        monkeypatch.setattr(outputs, "unnamed_file", lambda folder: None)
    else:
        probe = outputs.unnamed_file(tmp_path)
        if probe is None:
            pytest.skip("this platform has no unnamed files to link into place")
        probe.close()

        def no_copy(path):
            raise AssertionError("the rows were copied instead of linked into place")
        monkeypatch.setattr(outputs, "atomic_writer", no_copy)
    requests = [finished(0, 1, [], 1), finished(1, 2, [40], 1), finished(2, 4, [5, 6, 70], 1),
                finished(3, 3, [8, 9], 0), finished(4, 2, [11], 2)]
    out = tmp_path / "out.csv"
    out.write_text("an older file the run replaces\n")
    writer = RequestCsv(out, routing_time_instance_id=False)
    insts = {k: SimpleNamespace(index=k, model=SimpleNamespace(name=model)) for k in range(3)}
    writer.on_batch_end(insts[1], None, 0, requests[:2])
    writer.on_batch_end(insts[2], None, 0, requests[4:])
    writer.on_batch_end(insts[1], None, 0, requests[2:3])
    writer.on_batch_end(insts[0], None, 0, requests[3:4])
    writer.on_finish(None)
    expected = io.StringIO()
    rows = csv.writer(expected, lineterminator="\n")
    rows.writerow(CSV_COLUMNS)
    for r in (requests[3], *requests[:3], requests[4]):  # by instance, then completion
        rows.writerow(RequestRecord.of(r, model, False).csv_row())
    assert out.read_text() == expected.getvalue()
    assert out.stat().st_mode & 0o777 == 0o644
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_csv_without_instance_0_rows_still_starts_with_the_header(tmp_path):
    r = Request(rid=5, arrival=0, prompt=3, output=1)
    r.instance = r.routed_instance = 1
    r.first_scheduled, r.first_token, r.end, r.generated = 0, 10, 10, 1
    out = tmp_path / "out.csv"
    writer = RequestCsv(out)
    writer.on_batch_end(SimpleNamespace(index=1, model=SimpleNamespace(name="m")), None, 0, [r])
    writer.on_finish(None)
    assert out.read_text() == ",".join(CSV_COLUMNS) + "\n1,5,m,3,4,0,10,10,0,10,0,[]\n"
