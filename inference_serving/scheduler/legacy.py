"""The existing LLMServingSim scheduler (serving.md §4.1), minus its listed defects.

Whole prompts only; running decodes first (they sit at the head of the queue), then prompts
FCFS while memory and the token budget last; swap preemption to host memory when blocks run out.
"""

from __future__ import annotations

from typing import ClassVar

from inference_serving.kv import NO_HIT, KVCacheManager, SwapSpace
from inference_serving.request import Request
from inference_serving.scheduler.base import (
    Batch,
    SchedulerOptions,
    SchedulerResources,
    admit,
    advance_tokens,
    hand_off,
)
from llmsim_core.errors import InputError

MIB = 1 << 20


class LegacyScheduler:
    """One ordered queue of waiting prompts, idle running decodes and swapped decodes."""

    legacy_limits: ClassVar[bool] = True

    def __init__(self, options: SchedulerOptions, kv: KVCacheManager,
                 resources: SchedulerResources) -> None:
        self.options = options
        self.kv = kv
        if kv.swap is None:
            kv.swap = SwapSpace(resources.host_capacity)
            kv.block_bytes, kv.npu_num = resources.block_bytes, resources.npu_num
        self.warn = resources.warn
        self.queue: list[Request] = []
        self.in_flight: list[Request] = []
        self.next_batch_id = 0
        self.num_preemptions = 0

    @property
    def host_bytes(self) -> int:
        """Memory held by this instance's swapped-out KV (whole-instance bytes)."""
        return self.kv.swap.used_bytes

    def add(self, request: Request) -> None:
        """Queue an arrived request."""
        self.queue.append(admit(request, self.options))

    def num_requests(self) -> int:
        """Requests queued or in flight on this instance."""
        return len(self.queue) + len(self.in_flight)

    def requests(self) -> list[Request]:
        """Every request queued or in flight on this instance."""
        return [*self.in_flight, *self.queue]

    def _extra_blocks(self, request: Request) -> int:
        # Room for the sequence plus the token this iteration produces: (len // bs) + 1 blocks
        # for a prompt or swapped-in request, +1 block for a decode when len % bs == 0.
        return max(self.kv.blocks_for(request.num_tokens + 1) - request.blocks, 0)

    def _fit(self, candidates: list[Request]) -> int:
        free = self.kv.available_blocks()
        for n, request in enumerate(candidates):
            free -= self._extra_blocks(request)
            if free < 0:
                return n
        return len(candidates)

    def _swap_out(self, victim: Request, batch: Batch) -> bool:
        per_npu = self.kv.swap_out(victim)
        if per_npu is None:
            return False
        batch.swap_out_bytes += per_npu
        batch.swap_target = self.kv.swap.target
        self.num_preemptions += 1
        batch.num_preempted += 1
        batch.preempted.append(victim)
        return True

    def schedule(self, now: int) -> Batch | None:
        """Form the next batch at `now` (serving.md §4.1 steps 1–8)."""
        if not self.queue:
            return None
        candidates = self.queue
        limit = self.options.max_num_seqs
        if self.options.prioritize_prefill and any(not r.prefilled for r in candidates):
            candidates = [r for r in candidates if not r.prefilled]
        candidates = candidates[:limit] if limit else list(candidates)
        batch = Batch(self.next_batch_id, [], [], [])
        n = self._fit(candidates)
        while n == 0:
            decodes = [r for r in candidates if r.prefilled and not r.swapped and r.blocks]
            if not decodes:
                return None
            if not self._swap_out(decodes[-1], batch):
                if not self.in_flight:  # nothing running will free a block: no way on
                    swap = self.kv.swap
                    raise InputError(f"the legacy scheduler must swap out request "
                                     f"{decodes[-1].rid}, but its swap space ({swap.target} "
                                     f"memory, {swap.capacity_bytes / MIB:.1f} MiB) is full and "
                                     "no batch can run", "the cluster config's host memory",
                                     "raise cpu_mem.mem_size, or use --scheduler vllm, which "
                                     "falls back to recomputation")
                return None
            candidates = decodes[:-1]
            n = self._fit(candidates)
        chosen = candidates[:n]
        budget = self.options.max_num_batched_tokens
        cost = [1 if r.prefilled else r.num_tokens for r in chosen]
        while len(chosen) > 1 and sum(cost) > budget:
            chosen.pop()
            cost.pop()
        if cost[0] > budget:
            self.warn(f"request {chosen[0].rid}: prompt of {cost[0]} tokens exceeds the "
                      f"{budget}-token budget; running it alone")
        picked = set(map(id, chosen))
        self.queue = [r for r in self.queue if id(r) not in picked]
        kv = self.kv
        # Every prompt is matched before any of the batch is inserted: a prompt never hits
        # the pages of another prompt of the same batch (serving.md §8.1).
        hits = [kv.get_computed_blocks(r) for r in chosen] if kv.prefix_caching \
            else [NO_HIT] * len(chosen)
        if not kv.hits_are_prior_kv and any(hit.tokens for hit in hits):
            batch.hidden_kv = [hit.tokens for hit in hits]
        for request, tokens, hit in zip(chosen, cost, hits, strict=True):
            if request.swapped:
                batch.swap_in_bytes += kv.swap_in(request)
                batch.swap_target = kv.swap.target
            kv.allocate_slots(request, request.num_tokens + 1, hit)
            if hit.tokens:
                # q = prompt − hit (at least the last token); the hit is prior KV.
                tokens -= hit.tokens
                batch.recall_bytes += hit.recall_bytes
                if hit.recall_bytes:
                    batch.recall_target = kv.tier.target
            if request.first_scheduled < 0:
                request.first_scheduled = now
                if kv.prefix_caching:
                    kv.count_hit(request, hit)
            batch.requests.append(request)
            batch.tokens.append(tokens)
            batch.decode.append(request.prefilled)
        self.in_flight += chosen
        self.next_batch_id += 1
        return batch

    def update(self, batch: Batch, now: int) -> list[Request]:
        """Apply a completed batch; unfinished requests go back to the head of the queue."""
        finished = advance_tokens(batch, now)
        leaving = hand_off(batch) if self.options.handoff_after_prefill else []
        for request in (*finished, *leaving):
            self.kv.finish(request)
        gone = set(map(id, leaving))
        pool = [r for r in batch.requests if r.end < 0 and id(r) not in gone]
        done_ids = set(map(id, batch.requests))
        self.in_flight = [r for r in self.in_flight if id(r) not in done_ids]
        if self.options.prioritize_prefill:
            self.queue = sorted(pool + self.queue, key=lambda r: (r.arrival, r.rid))
        else:
            self.queue = pool + self.queue
        return finished
