"""Property-based tests: the schedulers and the KV pool keep their invariants on any workload.

Hypothesis draws request mixes and scheduler settings; each case is run to completion with the
scheduler alone (a fixed iteration time), checking after every step that KV use stays within
[0, capacity], that the blocks the running requests hold add up to the pool's use, that every
request finishes exactly once with exactly its output tokens, and that the loop never stalls.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from inference_serving.kv_cache import KVCacheManager
from inference_serving.request import Request
from inference_serving.scheduler.base import SchedulerOptions, SchedulerResources
from inference_serving.scheduler.legacy import LegacyScheduler
from inference_serving.scheduler.vllm import VllmScheduler

STEP_NS = 1000

requests_strategy = st.lists(
    st.tuples(st.integers(1, 300), st.integers(1, 40), st.integers(0, 20)),
    min_size=1, max_size=25)


def _run(scheduler, kv: KVCacheManager, specs: list[tuple[int, int, int]]) -> list[Request]:
    requests = [Request(rid=i, arrival=gap * STEP_NS, prompt=p, output=o)
                for i, (p, o, gap) in enumerate(specs)]
    pending = sorted(requests, key=lambda r: r.arrival)
    finished: list[Request] = []
    now, steps, idle = 0, 0, 0
    limit = 20 * sum(r.prompt + r.output for r in requests) + 1000
    while len(finished) < len(requests):
        while pending and pending[0].arrival <= now:
            scheduler.add(pending.pop(0))
        batch = scheduler.schedule(now)
        if batch is None:
            idle += 1
            assert pending or idle < 3, "no batch while requests wait and nothing arrives"
            now = pending[0].arrival if pending else now + STEP_NS
            continue
        idle = 0
        assert 0 <= kv.free_blocks <= kv.num_blocks
        held = sum(r.blocks for r in scheduler.requests())
        assert held == kv.used_blocks, "blocks held by requests differ from the pool's use"
        now += STEP_NS
        finished += scheduler.update(batch, now)
        steps += 1
        assert steps < limit, "the scheduler does not converge"
    return finished


def _check_done(requests: list[Request], finished: list[Request], kv: KVCacheManager) -> None:
    assert sorted(r.rid for r in finished) == list(range(len(requests)))
    for r in finished:
        assert r.generated == r.output and len(r.itl) == r.output - 1
        assert r.first_token + sum(r.itl) == r.end
    assert kv.free_blocks == kv.num_blocks, "every block comes back at the end"


@settings(max_examples=60, deadline=None)
@given(specs=requests_strategy, block_size=st.sampled_from([1, 4, 16]),
       seqs=st.integers(1, 8), budget=st.integers(8, 512), prioritize=st.booleans(),
       chunked=st.booleans(), spare_blocks=st.integers(0, 40))
def test_vllm_scheduler_keeps_its_invariants(specs, block_size, seqs, budget, prioritize,
                                             chunked, spare_blocks):
    largest = max(p + o for p, o, _ in specs)
    # Enough blocks for the largest request alone (as the simulator checks up front), plus some.
    kv = KVCacheManager(-(-largest // block_size) + spare_blocks, block_size)
    options = SchedulerOptions(max_num_batched_tokens=budget, max_num_seqs=seqs,
                               block_size=block_size, chunked_prefill=chunked,
                               prioritize_prefill=prioritize)
    scheduler = VllmScheduler(options, kv)
    finished = _run(scheduler, kv, specs)
    _check_done([0] * len(specs), finished, kv)


@settings(max_examples=40, deadline=None)
@given(specs=requests_strategy, block_size=st.sampled_from([4, 16]),
       spare_blocks=st.integers(0, 40))
def test_legacy_scheduler_keeps_its_invariants(specs, block_size, spare_blocks):
    largest = max(p + o for p, o, _ in specs)
    kv = KVCacheManager(-(-largest // block_size) + spare_blocks, block_size)
    options = SchedulerOptions(max_num_batched_tokens=4096, max_num_seqs=0,
                               block_size=block_size, chunked_prefill=False)
    resources = SchedulerResources(block_bytes=1024, npu_num=1, host_capacity=1 << 40,
                                   warn=lambda message: None)
    scheduler = LegacyScheduler(options, kv, resources)
    finished = _run(scheduler, kv, specs)
    _check_done([0] * len(specs), finished, kv)
