"""`--trace-output`: Chrome trace-event JSON of a run."""

from __future__ import annotations

import csv
import json
from collections import defaultdict

import pytest

from inference_serving import simulate
from tests.conftest import REPO
from tests.test_cli_errors import run_main

# The README's built-in example (run.sh without arguments).
EXAMPLE = ("dataset/example_sharegpt_req100_rate10.jsonl", "--num-req", "100",
           "--log-interval", "1.0")
SINGLE = REPO / "cluster_config/single_node_single_instance.json"
PD = REPO / "cluster_config/single_node_pd_instance.json"
REQUIRED = {"M": {"name", "pid", "tid", "args"}, "X": {"name", "pid", "tid", "ts", "dur"},
            "C": {"name", "pid", "ts", "args"}, "b": {"name", "cat", "id", "pid", "ts"},
            "e": {"name", "cat", "id", "pid", "ts"}, "n": {"name", "cat", "id", "pid", "ts"},
            "s": {"name", "cat", "id", "pid", "tid", "ts"},
            "f": {"name", "cat", "id", "pid", "tid", "ts", "bp"}}
EPS_US = 1e-6  # µs timestamps are ns / 1000 as JSON floats


def events_of(path) -> list[dict]:
    return json.loads(path.read_text())["traceEvents"]


def spans_by_track(events: list[dict]) -> dict[tuple[int, int], list[tuple[float, float]]]:
    tracks = defaultdict(list)
    for e in events:
        if e["ph"] == "X":
            tracks[e["pid"], e["tid"]].append((e["ts"], e["ts"] + e["dur"]))
    return tracks


def disjoint(spans: list[tuple[float, float]]) -> bool:
    """True when no two (start, end) spans overlap."""
    spans = sorted(spans)
    return all(end <= nxt + EPS_US for (_, end), (nxt, _) in zip(spans, spans[1:], strict=False))


def request_spans(events: list[dict]) -> dict[int, float]:
    """Request id -> duration (ns) of its outer async span."""
    begins = {e["id"]: e["ts"] for e in events if e["ph"] == "b" and e["name"].startswith("req")}
    return {e["id"]: (e["ts"] - begins[e["id"]]) * 1000 for e in events
            if e["ph"] == "e" and e["name"].startswith("req")}


@pytest.fixture(scope="module")
def readme_trace(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("timeline")
    done = run_main(["--cluster-config", str(SINGLE), "--dataset", *EXAMPLE,
                     "--output", str(tmp / "out.csv"), "--trace-output", str(tmp / "t.json")])
    assert done.returncode == 0, done.stderr
    with (tmp / "out.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return events_of(tmp / "t.json"), rows


def test_every_event_has_the_fields_of_its_phase(readme_trace):
    events, _ = readme_trace
    assert {e["ph"] for e in events} >= {"M", "X", "C", "b", "e"}
    for e in events:
        assert REQUIRED[e["ph"]] <= e.keys(), e
    batches = [e for e in events if e["ph"] == "X"]
    for e in batches:
        args = e["args"]
        assert args["prefill_tokens"] + args["decode_tokens"] == args["tokens"] > 0
        assert 0 < args["compute_ns"] <= args["duration_ns"] == round(e["dur"] * 1000)


def test_spans_on_one_track_never_overlap(readme_trace):
    events, _ = readme_trace
    tracks = spans_by_track(events)
    assert tracks
    assert all(disjoint(spans) for spans in tracks.values())


def test_request_spans_last_as_long_as_the_csv_latencies(readme_trace):
    events, rows = readme_trace
    spans = request_spans(events)
    assert len(spans) == len(rows) == 100
    for row in rows:
        assert spans[int(row["request id"])] == pytest.approx(int(row["latency"]), abs=1e-2)
    # Nested phases: queued + prefill + decode = the whole request.
    inner = defaultdict(float)
    opened = {}
    for e in events:
        if e["ph"] in "be" and not e["name"].startswith("req"):
            key = (e["id"], e["name"])
            if e["ph"] == "b":
                opened[key] = e["ts"]
            else:
                inner[e["id"]] += (e["ts"] - opened.pop(key)) * 1000
    assert all(inner[rid] == pytest.approx(spans[rid], abs=1e-2) for rid in spans)


def test_pipeline_stage_spans_never_overlap(tmp_path):
    path = tmp_path / "pp.json"
    simulate(REPO / "cluster_config/single_node_tp2_pp2_instance.json", dataset=EXAMPLE[0],
             num_req=40, trace_output=path)
    tracks = spans_by_track(events_of(path))
    assert len(tracks) == 4  # 2 stages x TP2
    assert all(disjoint(spans) for spans in tracks.values())


def test_pd_hand_offs_are_flows_from_prefill_to_decode(tmp_path):
    path = tmp_path / "pd.json"
    results = simulate(PD, dataset=EXAMPLE[0], num_req=30, trace_output=path)
    events = events_of(path)
    starts = {e["id"]: e for e in events if e["ph"] == "s"}
    ends = {e["id"]: e for e in events if e["ph"] == "f"}
    handed = {r.request_id for r in results.requests if r.instance_id == 1}
    assert set(starts) == set(ends) == handed and handed
    for rid in handed:
        assert starts[rid]["pid"] == 1 and ends[rid]["pid"] == 2  # instance 0 -> instance 1
        assert starts[rid]["ts"] < ends[rid]["ts"]
    assert all(disjoint(spans) for spans in spans_by_track(events).values())


def test_same_run_gives_the_same_bytes(tmp_path):
    for name in ("a.json", "b.json"):
        simulate(PD, dataset=EXAMPLE[0], num_req=20, trace_output=tmp_path / name)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_trace_max_requests_bounds_spans_and_batches(tmp_path):
    full, bounded = tmp_path / "full.json", tmp_path / "ten.json"
    results = simulate(SINGLE, dataset=EXAMPLE[0], num_req=60, trace_output=full)
    simulate(SINGLE, dataset=EXAMPLE[0], num_req=60, trace_output=bounded,
             trace_max_requests=10)
    events = events_of(bounded)
    assert sorted(request_spans(events)) == list(range(10))
    last_end = max(r.end_time for r in results.requests if r.request_id < 10) / 1000
    batches = [e for e in events if e["ph"] == "X"]
    assert batches and max(e["ts"] for e in batches) < last_end
    assert len(batches) < sum(e["ph"] == "X" for e in events_of(full))
