"""vLLM-v1 scheduler behaviour and KV invariants (serving.md §4.3)."""

from __future__ import annotations

import random

import pytest

from inference_serving.kv_cache import KVCacheManager
from inference_serving.request import Request
from inference_serving.scheduler.base import SchedulerOptions
from inference_serving.scheduler.vllm import VllmScheduler


def make(blocks: int = 1000, budget: int = 2048, seqs: int = 128, **kw) -> VllmScheduler:
    opts = SchedulerOptions(max_num_batched_tokens=budget, max_num_seqs=seqs, block_size=16, **kw)
    return VllmScheduler(opts, KVCacheManager(blocks, 16))


def drain(sched: VllmScheduler, limit: int = 100_000) -> list[tuple[list[int], int]]:
    """Run iterations (1 time unit each) until idle; check invariants after each one."""
    history = []
    now = 0
    while sched.num_requests():
        batch = sched.schedule(now)
        assert batch is not None, "scheduler stalled with work left"
        assert batch.total_tokens <= sched.options.max_num_batched_tokens
        assert len(sched.running) <= sched.options.max_num_seqs
        assert len({id(r) for r in batch.requests}) == len(batch.requests)
        now += 1
        sched.update(batch, now)
        kv = sched.kv
        assert 0 <= kv.free_blocks <= kv.num_blocks
        held = sum(r.blocks for r in sched.running) + sum(r.blocks for r in sched.waiting)
        assert held == kv.used_blocks
        history.append((list(batch.tokens), batch.num_preempted))
        assert len(history) < limit
    return history


def test_long_prompt_is_chunked_and_first_token_comes_with_the_last_chunk():
    sched = make()
    req = Request(rid=0, arrival=0, prompt=5000, output=3)
    sched.add(req)
    history = drain(sched)
    assert [tokens for tokens, _ in history] == [[2048], [2048], [904], [1], [1]]
    assert req.first_token == 3 and list(req.itl) == [1, 1] and req.end == 5
    assert sched.kv.free_blocks == 1000


def test_running_decodes_are_served_before_new_prompts():
    sched = make(budget=10)
    first = Request(rid=0, arrival=0, prompt=4, output=5)
    sched.add(first)
    batch = sched.schedule(0)
    sched.update(batch, 1)
    sched.add(Request(rid=1, arrival=1, prompt=30, output=2))
    batch = sched.schedule(1)
    assert batch.requests[0] is first and batch.tokens == [1, 9]
    assert batch.decode == [True, False]


def test_max_num_seqs_limits_running_requests():
    sched = make(seqs=3)
    for i in range(10):
        sched.add(Request(rid=i, arrival=0, prompt=8, output=4))
    batch = sched.schedule(0)
    assert len(batch.requests) == 3
    drain(sched)


def test_preemption_recomputes_and_conserves_tokens():
    rng = random.Random(7)
    sched = make(blocks=40)
    reqs = [Request(rid=i, arrival=0, prompt=rng.randint(20, 200), output=rng.randint(20, 200))
            for i in range(30)]
    for r in reqs:
        sched.add(r)
    history = drain(sched)
    assert sum(p for _, p in history) > 0, "the pool is small enough to force preemption"
    assert sched.num_preemptions > 0
    for r in reqs:
        assert r.generated == r.output and len(r.itl) == r.output - 1
        assert r.num_tokens == r.prompt + r.output
        assert r.first_token + sum(r.itl) == r.end
    assert sched.kv.free_blocks == 40


def test_unchunked_mode_never_splits_a_prompt_that_fits():
    sched = make(budget=100, chunked_prefill=False)
    for i, prompt in enumerate((60, 60, 30)):
        sched.add(Request(rid=i, arrival=0, prompt=prompt, output=1))
    first = sched.schedule(0)
    assert first.tokens == [60]  # the second 60-token prompt would not fit whole
    sched.update(first, 1)
    assert sched.schedule(1).tokens == [60, 30]


def test_unchunked_prompt_longer_than_budget_runs_alone():
    sched = make(budget=100, chunked_prefill=False)
    sched.add(Request(rid=0, arrival=0, prompt=300, output=1))
    assert sched.schedule(0).tokens == [300]


def test_long_prefill_threshold_caps_per_request_chunks():
    sched = make(long_prefill_token_threshold=256)
    sched.add(Request(rid=0, arrival=0, prompt=600, output=1))
    assert [t for t, _ in drain(sched)] == [[256], [256], [88]]


def test_gen_mode_starts_in_decode_and_allocates_the_prompt():
    sched = make(gen_only=True)
    req = Request(rid=0, arrival=0, prompt=40, output=2)
    sched.add(req)
    batch = sched.schedule(0)
    assert batch.tokens == [1] and batch.decode == [True]
    assert req.blocks == 3  # 40 prompt tokens already resident
    sched.update(batch, 1)
    assert batch.prompt_done == [] and req.first_token == 1


def test_prioritize_prefill_holds_decodes_while_prompt_work_exists():
    sched = make(budget=64, prioritize_prefill=True)
    first = Request(rid=0, arrival=0, prompt=8, output=5)
    sched.add(first)
    sched.update(sched.schedule(0), 1)
    sched.add(Request(rid=1, arrival=1, prompt=100, output=2))
    batch = sched.schedule(1)
    assert first not in batch.requests and batch.tokens == [64]


@pytest.mark.parametrize("seed", range(5))
def test_random_workloads_finish_every_request_exactly_once(seed):
    rng = random.Random(seed)
    sched = make(blocks=rng.randint(30, 300), budget=rng.choice((64, 512, 2048)),
                 seqs=rng.randint(1, 64))
    reqs = [Request(rid=i, arrival=0, prompt=rng.randint(1, 400), output=rng.randint(1, 300))
            for i in range(60)]
    for r in reqs:
        sched.add(r)
    now = 0
    finished = []
    while sched.num_requests():
        batch = sched.schedule(now)
        assert batch is not None
        now += 1
        finished += sched.update(batch, now)
    assert sorted(r.rid for r in finished) == list(range(60))
    assert sum(r.generated for r in reqs) == sum(r.output for r in reqs)
