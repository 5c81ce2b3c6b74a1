"""Streaming decodes: advancing steady decodes lazily gives exactly the per-request results."""

from __future__ import annotations

import json

import pytest

from inference_serving import builder, simulate
from inference_serving.kv import KVCacheManager
from inference_serving.observers import Observer
from inference_serving.request import Request
from inference_serving.scheduler import decode_stream
from inference_serving.scheduler.decode_stream import DecodeStream
from llm_profile.perf_model import AttentionBatch, DecodeLens, decode_total
from tests.conftest import REPO

TRACE = REPO / "dataset/example_sharegpt_req100_rate10.jsonl"
SINGLE = REPO / "cluster_config/single_node_single_instance.json"


def small_memory(mem_size: float) -> dict:
    """The single-A6000 config with little device memory left for KV (preemptions)."""
    config = json.loads(SINGLE.read_text())
    config["nodes"][0]["instances"][0]["npu_mem"]["mem_size"] = mem_size
    return config


def run_both(monkeypatch, config, **options) -> None:
    """Run with streaming decodes and with every request advanced per iteration; the
    per-request records and the summary must be identical, and streaming must have happened."""
    started = []
    original = DecodeStream.start

    def counting(self, request):
        started.append(request.rid)
        original(self, request)

    monkeypatch.setattr(DecodeStream, "start", counting)
    streamed = simulate(config, options.pop("dataset", TRACE), **options)
    assert started, "no request streamed: the case does not exercise streaming"
    monkeypatch.setattr(builder, "streams_safely", lambda cls: False)
    started.clear()
    eager = simulate(config, options.pop("dataset", TRACE), **options)
    assert not started
    assert streamed.requests == eager.requests
    assert streamed.summary == eager.summary
    assert len(streamed.requests) == options.get("num_req", 100)


@pytest.mark.parametrize(("config", "options"), [
    (SINGLE, {}),
    (SINGLE, {"gen": True}),
    (SINGLE, {"max_num_batched_tokens": 200, "max_num_seqs": 64}),  # batches cut by budget
    (SINGLE, {"max_num_batched_tokens": 5, "max_num_seqs": 8, "num_req": 12}),  # decodes cut
    (SINGLE, {"long_prefill_token_threshold": 64}),
    (SINGLE, {"chunked_prefill": False}),
    (SINGLE, {"vllm_version": "0.19"}),
    (SINGLE, {"check_invariants": True}),
    (SINGLE, {"perf_model": "CUSTOM",  # a perf model that lists every decode length
              "custom_perf_model": "examples.custom_perf_model:OutsideCostModel"}),
    (small_memory(17.2), {}),  # recompute preemptions
    (small_memory(17.2), {"preemption_mode": "swap"}),
    (small_memory(17.2), {"check_invariants": True, "max_num_seqs": 32}),
    (REPO / "cluster_config/single_node_pd_instance.json", {}),
    (REPO / "cluster_config/dual_node_multi_instance.json",
     {"request_routing_policy": "LOAD"}),  # the router reads every running request
    (REPO / "cluster_config/single_node_tp2_instance.json", {}),
    (REPO / "cluster_config/single_node_moe_instance.json", {}),
], ids=["single", "gen", "budget-cut", "tiny-budget", "threshold", "whole-prompts",
        "vllm-0.19", "invariants", "custom-perf-model", "recompute", "swap",
        "pressure-invariants", "pd", "load-router", "tp2", "moe"])
def test_streaming_equals_advancing_every_request(monkeypatch, config, options):
    run_both(monkeypatch, config, **options)


def test_streaming_is_off_where_others_read_running_requests(monkeypatch):
    started = []
    monkeypatch.setattr(DecodeStream, "start", lambda self, r: started.append(r))
    for options in ({"prioritize_prefill": True}, {"enable_prefix_caching": True},
                    {"scheduler": "legacy"}):
        simulate(SINGLE, TRACE, num_req=20, **options)
    simulate(REPO / "cluster_config/single_node_pp2_instance.json", TRACE, num_req=20)
    assert not started


class ContextWatcher(Observer):
    """Reads every batch entry's sequence length as the iteration ends."""

    def __init__(self) -> None:
        self.totals: list[int] = []

    def on_batch_end(self, inst, batch, end_ns, finished) -> None:
        self.totals.append(sum(r.num_tokens for r in batch.requests))


def test_a_callers_batch_observer_sees_current_fields(monkeypatch):
    watched = ContextWatcher()
    simulate(SINGLE, TRACE, num_req=30, observers=[watched])
    monkeypatch.setattr(builder, "streams_safely", lambda cls: False)
    reference = ContextWatcher()
    simulate(SINGLE, TRACE, num_req=30, observers=[reference])
    assert watched.totals == reference.totals and len(watched.totals) > 100


def streaming_request(num_tokens: int, blocks: int, output: int, generated: int) -> Request:
    r = Request(rid=0, arrival=0, prompt=num_tokens - generated, output=output)
    r.num_tokens, r.computed, r.generated, r.blocks = num_tokens, num_tokens - 1, generated, blocks
    r.prefilled, r.first_token, r.last_token, r.itl = True, 100, 1_000, [900]
    return r


def test_a_streaming_request_is_due_at_its_block_boundary_and_last_token():
    stream = DecodeStream(block_size=16)
    for end in (400, 1_000):  # two completed steps; the request got its token in the second
        stream.complete_step(end)
    r = streaming_request(num_tokens=20, blocks=2, output=30, generated=2)
    stream.start(r)
    # Steps from 2 on: the length at step s is 20 + s - 2; it exceeds 2 blocks (32) at s = 15.
    assert (r.stream_from, r.stream_base, r.due_block) == (2, 18, 15)
    # 28 more tokens after step 1: the last one is sampled in step 2 + 28 - 1 = 29.
    assert r.due_finish == 29
    assert stream.block_due == {15: [r]} and stream.finish_due == {29: [r]}
    assert (stream.streaming, stream.base_total) == (1, 18)
    for end in (1_030, 1_070, 1_120):
        stream.complete_step(end)
    stream.sync(r)
    assert (r.num_tokens, r.computed, r.generated, r.last_token) == (23, 22, 5, 1_120)
    assert r.itl == [900, 30, 40, 50]
    assert r.itl_cell() == "[900, 30, 40, 50]"
    assert r.stream_from == 5 and r.stream_base == 18  # re-anchored, same length formula


def test_a_request_finishing_before_its_next_block_is_not_listed_for_one():
    stream = DecodeStream(block_size=16)
    stream.complete_step(10)
    r = streaming_request(num_tokens=20, blocks=2, output=5, generated=2)
    stream.start(r)
    assert r.due_finish == 3 and r.due_block == 14
    assert stream.block_due == {}


def test_blocks_grow_in_place_and_come_due_again_a_block_later():
    stream = DecodeStream(block_size=16)
    kv = KVCacheManager(num_blocks=10, block_size=16)
    r = streaming_request(num_tokens=33, blocks=2, output=100, generated=2)
    kv.free_blocks -= 2
    stream.complete_step(5)
    stream.start(r)
    assert r.due_block == 1  # 33 tokens need a third block at once
    assert stream.needing_blocks() == [r]
    stream.grow([r], kv)
    assert (r.blocks, kv.free_blocks, r.due_block) == (3, 7, 17)
    assert stream.block_due[17] == [r]


def test_a_request_listed_twice_for_a_step_is_handled_once():
    stream = DecodeStream(block_size=16)
    stream.complete_step(5)
    r = streaming_request(num_tokens=20, blocks=2, output=9, generated=2)
    stream.start(r)
    stream.stop(r)
    stream.start(r)  # the same due steps again
    assert stream.finish_due[r.due_finish] == [r, r]
    assert stream.finishing(r.due_finish) == [r]


def test_old_gaps_are_dropped_once_no_streaming_request_needs_them(monkeypatch):
    monkeypatch.setattr(decode_stream, "TRIM_EVERY", 4)
    stream = DecodeStream(block_size=16)
    for end in range(10, 70, 10):
        stream.complete_step(end)
    r = streaming_request(num_tokens=20, blocks=2, output=100, generated=2)
    stream.start(r)  # from step 6
    for end in (75, 85):
        stream.complete_step(end)
    stream.trim([r])
    assert (stream.offset, list(stream.gaps), stream.texts) == (6, [15, 10], ["15", "10"])
    stream.sync(r)
    assert r.itl[-2:] == [15, 10]


def test_decode_lens_give_count_and_total_without_listing():
    calls = []

    def make():
        calls.append(1)
        return (5, 7, 9)

    lens = DecodeLens(3, 21, make)
    assert (len(lens), decode_total(lens)) == (3, 21)
    assert not calls
    assert list(lens) == [5, 7, 9] and lens[1] == 7 and max(lens) == 9 and lens == (5, 7, 9)
    assert calls == [1]  # listed once
    assert decode_total((5, 7, 9)) == 21
    batch = AttentionBatch((), (), lens)
    assert batch.decode_lens is lens
