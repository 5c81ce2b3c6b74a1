"""vLLM-v1-style continuous batching: token budget, chunked prefill, prefix caching through
the KV manager, recompute or swap preemption."""

from __future__ import annotations

from collections import deque
from itertools import islice, repeat
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


class VllmScheduler:
    """Phase-free scheduler: each request's computed tokens chase its sequence length.

    Each step serves running requests first (decodes and unfinished prefill chunks), then admits
    waiting requests FCFS while the token budget, the sequence slots and free KV blocks last.
    When blocks run out, the most recently admitted running request is preempted: by default
    (vLLM's) its blocks are freed and it is recomputed later (prompt + generated tokens), which
    costs a re-prefill; with `preemption="swap"` its KV is stored on the swap space (timed
    swap-out) and loaded back when it is readmitted (timed swap-in), falling back to recompute
    when the swap space is full. With a prefix-caching manager, an admitted prompt starts
    from the prefix the manager finds cached.
    """

    legacy_limits: ClassVar[bool] = False

    def __init__(self, options: SchedulerOptions, kv: KVCacheManager,
                 resources: SchedulerResources | None = None) -> None:
        self.options = options
        self.kv = kv
        if kv.swap is None and resources is not None and options.preemption == "swap":
            kv.swap = SwapSpace(resources.host_capacity)
            kv.block_bytes, kv.npu_num = resources.block_bytes, resources.npu_num
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.next_batch_id = 0
        self.num_preemptions = 0
        self.in_flight: set[int] = set()  # ids of requests in a batch still in the pipeline

    @property
    def host_bytes(self) -> int:
        """Memory held by this instance's swapped-out KV (whole-instance bytes)."""
        return self.kv.swap.used_bytes if self.kv.swap is not None else 0

    def add(self, request: Request) -> None:
        """Queue an arrived request."""
        self.waiting.append(admit(request, self.options))

    def num_requests(self) -> int:
        """Requests waiting or running on this instance."""
        return len(self.waiting) + len(self.running)

    def requests(self) -> list[Request]:
        """Every request waiting or running on this instance."""
        return [*self.running, *self.waiting]

    def _preempt_last(self, chosen: list[Request]) -> tuple[Request, int, int] | None:
        """Preempt the most recently admitted running request that is neither in an in-flight
        batch nor already chosen for this one; return it, its former position and the per-NPU
        bytes swapped out (0: recomputed)."""
        taken = set(map(id, chosen)) | self.in_flight
        for position in range(len(self.running) - 1, -1, -1):
            if id(self.running[position]) not in taken:
                break
        else:
            return None
        victim = self.running.pop(position)
        swapped = self.kv.swap_out(victim) if self.options.preemption == "swap" else None
        if swapped is None:
            self.kv.free(victim)
            victim.computed = 0
        self.waiting.appendleft(victim)
        self.num_preemptions += 1
        return victim, position, swapped or 0

    def schedule(self, now: int) -> Batch | None:
        """Form the next batch at `now` (serving.md §4.3).

        `--prioritize-prefill` keeps decodes out while prompt work exists; when none of that
        prompt work can run (no free sequence slot or KV space), the decodes run, so the
        instance always makes progress.
        """
        prefill_only = self.options.prioritize_prefill and self._has_prompt_work()
        batch = self._form(now, prefill_only)
        if batch is None and prefill_only:
            batch = self._form(now, False)
        return batch

    def _form(self, now: int, prefill_only: bool) -> Batch | None:
        budget = self.options.max_num_batched_tokens
        threshold = self.options.long_prefill_token_threshold
        block_size = self.kv.block_size
        kv = self.kv
        chosen: list[Request] = []
        tokens: list[int] = []
        decode: list[bool] = []
        preempted: list[Request] = []
        swap_out = 0
        running = self.running
        index = 0
        in_flight = self.in_flight
        plain = not in_flight and not prefill_only
        while index < len(running) and budget > 0:
            if plain:
                # Hot path: a run of decodes that need no new block, taken in one go.
                start = index
                for request in islice(running, index, index + budget):
                    num_tokens = request.num_tokens
                    if num_tokens - request.computed != 1 or not request.prefilled or \
                            -(-num_tokens // block_size) > request.blocks:
                        break
                    index += 1
                if index > start:
                    chosen += running[start:index]
                    tokens += repeat(1, index - start)
                    decode += repeat(True, index - start)
                    budget -= index - start
                    continue
            request = running[index]
            if in_flight and id(request) in in_flight:
                index += 1  # already in a pipeline stage: not schedulable twice
                continue
            remaining = request.num_tokens - request.computed
            is_decode = remaining == 1 and request.prefilled
            if is_decode:
                if prefill_only:
                    index += 1
                    continue
                # Hot path: a decode needs a new block only when it starts one.
                if -(-request.num_tokens // block_size) <= request.blocks:
                    chosen.append(request)
                    tokens.append(1)
                    decode.append(True)
                    budget -= 1
                    index += 1
                    continue
            count = min(remaining, threshold, budget) if threshold > 0 else min(remaining, budget)
            while not kv.allocate_slots(request, request.computed + count):
                preemption = self._preempt_last(chosen)
                if preemption is None:
                    break
                victim, position, swapped = preemption
                preempted.append(victim)
                swap_out += swapped
                if victim is request:
                    break
                if position < index:
                    index -= 1  # a skipped request before us left the list: keep our place
            else:
                chosen.append(request)
                tokens.append(count)
                decode.append(is_decode)
                budget -= count
                index += 1
                continue
            break
        moved = (0, 0)
        if not preempted:
            moved = self._admit(budget, chosen, tokens, decode, now)
        if not chosen:
            return None
        batch = Batch(self.next_batch_id, chosen, tokens, decode,
                      num_preempted=len(preempted), preempted=preempted)
        if swap_out or moved[0]:
            batch.swap_out_bytes, batch.swap_in_bytes = swap_out, moved[0]
            batch.swap_target = kv.swap.target
        if moved[1]:
            batch.recall_bytes, batch.recall_target = moved[1], kv.tier.target
        self.next_batch_id += 1
        if self.options.pipelined:
            in_flight.update(map(id, chosen))
        return batch

    def _has_prompt_work(self) -> bool:
        return bool(self.waiting) or any(not r.prefilled or r.computed + 1 < r.num_tokens
                                         for r in self.running)

    def _admit(self, budget: int, chosen: list[Request], tokens: list[int], decode: list[bool],
               now: int) -> tuple[int, int]:
        """Admit waiting requests FCFS; return the per-NPU bytes swapped in and recalled."""
        slots = self.options.max_num_seqs
        kv = self.kv
        caching = kv.prefix_caching
        swap_in = recall = 0
        while self.waiting and budget > 0 and len(self.running) < slots:
            request = self.waiting[0]
            hit = kv.get_computed_blocks(request) \
                if caching and not request.swapped else NO_HIT
            start = hit.tokens or request.computed
            count = request.num_tokens - start
            if self.options.long_prefill_token_threshold > 0:
                count = min(count, self.options.long_prefill_token_threshold)
            if not self.options.chunked_prefill and count > budget:
                # A prompt longer than the whole budget could never run unchunked: run it alone.
                if chosen or count <= self.options.max_num_batched_tokens:
                    break
            else:
                count = min(count, budget)
            # vLLM >= 0.19: the whole sequence's blocks (less the shared prefix) must be free.
            if self.options.reserve_full_input and kv.blocks_for(request.num_tokens) - \
                    len(hit.blocks) - request.blocks > kv.free_blocks:
                break
            if not kv.allocate_slots(request, start + count, hit):
                break
            self.waiting.popleft()
            self.running.append(request)
            if request.swapped:
                swap_in += kv.swap_in(request)
            recall += hit.recall_bytes
            if request.first_scheduled < 0:
                request.first_scheduled = now
                if caching:
                    kv.count_hit(request, hit)
            chosen.append(request)
            tokens.append(count)
            decode.append(request.prefilled and count == 1 and
                          request.computed + 1 == request.num_tokens)
            budget -= count
        return swap_in, recall

    def update(self, batch: Batch, now: int) -> list[Request]:
        """Advance computed tokens, sample tokens, and retire finished requests."""
        if self.in_flight:
            self.in_flight.difference_update(map(id, batch.requests))
        finished = advance_tokens(batch, now)
        leaving = hand_off(batch) if self.options.handoff_after_prefill else []
        if finished or leaving:
            for request in (*finished, *leaving):
                self.kv.finish(request)
            gone = set(map(id, leaving))
            self.running = [r for r in self.running if r.end < 0 and id(r) not in gone]
        return finished
