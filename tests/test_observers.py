"""Observers: the loop's events, the progress line and the compatibility profile."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from inference_serving import simulate
from inference_serving.compat import IDLE_POLL_NS, CompatProfile
from inference_serving.flags import build_parser, options_from_args
from inference_serving.observers import Observer, hooks
from inference_serving.report import ProgressLine
from tests.conftest import REPO

EXAMPLE = "dataset/example_sharegpt_req100_rate10.jsonl"


class Recorder(Observer):
    """Keeps every event."""

    def __init__(self) -> None:
        self.events: dict[int, list[tuple[str, int, int]]] = defaultdict(list)
        self.batches: dict[tuple[int, int], list[int]] = {}
        self.preempted_in_batches = 0
        self.finished = 0

    def on_batch_start(self, inst, batch, start_ns, end_ns, costs):
        # One stage: the cost's duration is the batch's span; its NPUs are the instance's.
        (cost,) = costs
        assert end_ns == start_ns + cost.duration_ns > start_ns
        first = inst.spec.first_npu
        assert sorted(cost.devices) == list(range(first, first + inst.spec.npu_num))
        assert cost.devices[first].compute_ns <= cost.duration_ns
        self.batches[inst.index, batch.batch_id] = [start_ns, end_ns]
        self.preempted_in_batches += batch.num_preempted

    def on_batch_end(self, inst, batch, end_ns, finished):
        self.batches[inst.index, batch.batch_id].append(end_ns)
        self.finished += len(finished)

    def on_request(self, event, request, time_ns, instance):
        self.events[request.rid].append((event, time_ns, instance))


def test_request_events_follow_each_request_through_a_pd_cluster():
    recorder = Recorder()
    results = simulate(REPO / "cluster_config/single_node_pd_instance.json", dataset=EXAMPLE,
                       num_req=30, observers=[recorder])
    assert recorder.finished == 30
    assert all(start < end == done for start, end, done in recorder.batches.values())
    for record in results.requests:
        names = [e[0] for e in recorder.events[record.request_id]]
        arrival, routed, first = recorder.events[record.request_id][:3]
        assert arrival == ("arrival", record.arrival, -1)
        assert routed == ("routed", record.arrival, 0)  # the prefill instance
        assert first == ("first_token", record.arrival + record.ttft, 0)
        finished = recorder.events[record.request_id][-1]
        assert finished == ("finished", record.end_time, record.instance_id)
        # One-token requests finish on the prefill side; the others are handed to decode.
        handed = record.output - record.input > 1
        assert names == ["arrival", "routed", "first_token", *(["handoff"] * handed),
                         "finished"]
        assert record.instance_id == (1 if handed else 0)


def test_every_preemption_is_published_once_per_victim():
    config = json.loads((REPO / "cluster_config/single_node_single_instance.json").read_text())
    config["nodes"][0]["instances"][0]["npu_mem"]["mem_util"] = 0.38  # a few hundred blocks
    for scheduler in ("vllm", "legacy"):
        recorder = Recorder()
        simulate(config, dataset=EXAMPLE, num_req=60, scheduler=scheduler,
                 observers=[recorder])
        preempted = [e for events in recorder.events.values() for e in events
                     if e[0] == "preempted"]
        assert recorder.preempted_in_batches > 0, scheduler
        assert len(preempted) == recorder.preempted_in_batches, scheduler


def test_only_overridden_hooks_are_called():
    class WindowsOnly(Observer):
        def on_window(self, time_ns, rates):
            pass

    observers = [WindowsOnly(), Recorder()]
    assert len(hooks(observers, "on_window")) == 1
    assert len(hooks(observers, "on_request")) == 1
    assert hooks(observers, "on_finish") == []


def test_progress_line_is_cleared_before_each_status_block(capsys):
    line = ProgressLine(total=3)
    line.on_batch_end(None, None, 1_500_000_000, [object()])
    drawn = capsys.readouterr().err
    assert drawn == "\r       1.500 s simulated, 1/3 requests finished"
    line.on_window(2_000_000_000, (0.0, 0.0))
    assert capsys.readouterr().err == "\r" + " " * (len(drawn) - 1) + "\r"
    line.on_batch_end(None, None, 2_100_000_000, [])  # not the 257th batch: no redraw
    line.on_window(2_500_000_000, (0.0, 0.0))
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("flags,profile", [
    ([], CompatProfile()),
    (["--compat-output-store"], CompatProfile(hidden_state_output_store=True)),
    (["--compat", "artifact"], CompatProfile(IDLE_POLL_NS, True, True, True, True, True, True)),
    (["--compat", "artifact", "--compat-output-store"], CompatProfile.artifact()),
])
def test_compat_flags_build_one_profile(flags, profile):
    options = options_from_args(build_parser().parse_args(["--dataset", EXAMPLE, *flags]))
    assert options.compat == profile
