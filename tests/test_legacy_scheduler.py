"""Legacy (existing LLMServingSim) scheduler: whole prompts, decodes first, swap preemption."""

from __future__ import annotations

import random

from inference_serving.kv_cache import KVCacheManager
from inference_serving.request import Request
from inference_serving.scheduler.base import SchedulerOptions, SchedulerResources
from inference_serving.scheduler.legacy import LegacyScheduler

BLOCK_BYTES = 1000


def make(blocks: int = 1000, budget: int = 2048, max_batch: int = 0, host: int = 10**12,
         warnings: list | None = None, **kw) -> LegacyScheduler:
    opts = SchedulerOptions(max_num_batched_tokens=budget, max_num_seqs=max_batch, block_size=16,
                            chunked_prefill=False, **kw)
    sink = warnings if warnings is not None else []
    return LegacyScheduler(opts, KVCacheManager(blocks, 16),
                           SchedulerResources(BLOCK_BYTES, 2, host, sink.append))


def run(sched: LegacyScheduler) -> list:
    now, batches = 0, []
    while sched.num_requests():
        batch = sched.schedule(now)
        assert batch is not None
        batches.append(batch)
        now += 1
        sched.update(batch, now)
        held = sum(r.blocks for r in sched.requests())
        assert held == sched.kv.used_blocks and 0 <= sched.kv.free_blocks
        assert sched.host_bytes >= 0
    return batches


def test_prompts_are_never_split_and_the_budget_drops_from_the_tail():
    sched = make(budget=100)
    for i, prompt in enumerate((60, 30, 20)):
        sched.add(Request(rid=i, arrival=0, prompt=prompt, output=2))
    first = sched.schedule(0)
    assert first.tokens == [60, 30]  # 60 + 30 + 20 > 100: the tail request waits
    sched.update(first, 1)
    second = sched.schedule(1)
    assert second.tokens == [1, 1, 20] and second.decode == [True, True, False]


def test_prompt_longer_than_the_budget_runs_alone_with_a_warning():
    warnings: list[str] = []
    sched = make(budget=100, warnings=warnings)
    sched.add(Request(rid=0, arrival=0, prompt=300, output=1))
    sched.add(Request(rid=1, arrival=0, prompt=10, output=1))
    assert sched.schedule(0).tokens == [300]
    assert warnings and "exceeds" in warnings[0]


def test_prefill_blocks_include_the_produced_token():
    sched = make()
    req = Request(rid=0, arrival=0, prompt=16, output=3)
    sched.add(req)
    sched.update(sched.schedule(0), 1)
    assert req.blocks == 2  # 16 // 16 + 1


def test_swap_preemption_moves_kv_to_host_and_back():
    sched = make(blocks=12)
    reqs = [Request(rid=i, arrival=0, prompt=40, output=60) for i in range(4)]
    for r in reqs:
        sched.add(r)
    batches = run(sched)
    assert sched.num_preemptions > 0
    outs = [b.swap_out_bytes for b in batches if b.swap_out_bytes]
    ins = [b.swap_in_bytes for b in batches if b.swap_in_bytes]
    assert outs and ins and sum(outs) == sum(ins)
    assert all(b % BLOCK_BYTES == 0 for b in outs)
    assert sched.host_bytes == 0
    for r in reqs:
        assert r.generated == 60 and len(r.itl) == 59 and not r.swapped


def test_max_batch_limits_requests_per_iteration():
    sched = make(max_batch=2)
    for i in range(5):
        sched.add(Request(rid=i, arrival=0, prompt=8, output=3))
    assert all(len(b.requests) <= 2 for b in run(sched))


def test_random_workloads_conserve_tokens():
    rng = random.Random(3)
    sched = make(blocks=60, budget=512)
    reqs = [Request(rid=i, arrival=0, prompt=rng.randint(1, 300), output=rng.randint(1, 200))
            for i in range(40)]
    for r in reqs:
        sched.add(r)
    run(sched)
    assert all(r.generated == r.output and r.end > 0 for r in reqs)
    assert sched.kv.free_blocks == 60
