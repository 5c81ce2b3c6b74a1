"""vLLM-v1-style continuous batching: token budget, chunked prefill, prefix caching through
the KV manager, recompute or swap preemption."""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from functools import partial
from itertools import islice, repeat
from typing import ClassVar

from inference_serving.kv import NO_HIT, KVCacheManager, SwapSpace
from inference_serving.request import Request
from inference_serving.scheduler.base import (
    Batch,
    SchedulerOptions,
    SchedulerResources,
    admit,
    advance_entries,
    advance_tokens,
    hand_off,
)
from inference_serving.scheduler.decode_stream import SEQ, DecodeStream, listed_lens
from llm_profile.perf_model import DecodeLens


def streams_safely(cls: type) -> bool:
    """True for VllmScheduler and subclasses that keep its batch forming and updating (only
    those know streaming requests' fields lag)."""
    return issubclass(cls, VllmScheduler) and all(
        getattr(cls, name) is getattr(VllmScheduler, name)
        for name in ("schedule", "update", "requests", "_form", "_admit", "_preempt_last"))


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

    With `options.stream_decodes`, steady decodes are advanced lazily (decode_stream.py): a
    batch is formed from runs of streaming requests taken whole and the few requests that need
    attention one by one, with the same result as walking every request.
    """

    legacy_limits: ClassVar[bool] = False

    def __init__(self, options: SchedulerOptions, kv: KVCacheManager,
                 resources: SchedulerResources | None = None) -> None:
        self.options = options
        self.kv = kv
        if kv.swap is None and resources is not None and options.preemption == "swap":
            kv.swap = SwapSpace(resources.host_capacity)
            kv.block_bytes, kv.npu_num = resources.block_bytes, resources.npu_num
        # Where the over-budget warning goes, until it has been given once.
        self.warn_once = resources.warn if resources is not None else None
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.next_batch_id = 0
        self.num_preemptions = 0
        self.in_flight: set[int] = set()  # ids of requests in a batch still in the pipeline
        self.next_seq = 0
        self.stream = DecodeStream(kv.block_size) if options.stream_decodes else None
        self.eager: list[Request] = []  # streaming mode: running requests not streaming

    @property
    def host_bytes(self) -> int:
        """Memory held by this instance's swapped-out KV (whole-instance bytes)."""
        return self.kv.swap.used_bytes if self.kv.swap is not None else 0

    def stop_streaming(self) -> None:
        """Advance every request in every iteration (before the first batch): for observers
        that read running requests' fields as iterations end."""
        if self.stream is not None and not self.stream.done:
            self.stream = None

    def add(self, request: Request) -> None:
        """Queue an arrived request."""
        self.waiting.append(admit(request, self.options))

    def num_requests(self) -> int:
        """Requests waiting or running on this instance."""
        return len(self.waiting) + len(self.running)

    def requests(self) -> list[Request]:
        """Every request waiting or running on this instance (fields brought up to date)."""
        if self.stream is not None:
            for request in self.running:
                if request.stream_from >= 0:
                    self.stream.sync(request)
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
        if self.stream is not None:
            if victim.stream_from >= 0:
                self.stream.stop(victim)
            else:
                self.eager.remove(victim)
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
        if self.stream is not None:
            return self._form_streaming(now)
        prefill_only = self.options.prioritize_prefill and self._has_prompt_work()
        batch = self._form(now, prefill_only)
        if batch is None and prefill_only:
            batch = self._form(now, False)
        return batch

    def _form(self, now: int, prefill_only: bool) -> Batch | None:
        budget = self.options.max_num_batched_tokens
        block_size = self.kv.block_size
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
            count, is_decode = self._chunk(request, budget)
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
            allocated, swapped, shift = self._allocate(request, count, index, chosen, preempted)
            swap_out += swapped
            index -= shift  # skipped requests before us left the list: keep our place
            if not allocated:
                break
            chosen.append(request)
            tokens.append(count)
            decode.append(is_decode)
            budget -= count
            index += 1
        return self._finish_batch(now, budget, chosen, tokens, decode, preempted, swap_out)

    def _chunk(self, request: Request, budget: int) -> tuple[int, bool]:
        """(tokens `request` computes in this step out of `budget`, whether it is a decode)."""
        remaining = request.num_tokens - request.computed
        if remaining == 1 and request.prefilled:
            return 1, True
        threshold = self.options.long_prefill_token_threshold
        return (min(remaining, threshold, budget) if threshold > 0 else
                min(remaining, budget)), False

    def _allocate(self, request: Request, count: int, index: int, chosen: list[Request],
                  preempted: list[Request]) -> tuple[bool, int, int]:
        """Give `request` (at `index` of the running list) blocks for `count` more tokens,
        preempting from the back while they are short: (allocated, per-NPU bytes swapped out,
        how many preempted requests stood before `index`)."""
        swap_out = shift = 0
        while not self.kv.allocate_slots(request, request.computed + count):
            preemption = self._preempt_last(chosen)
            if preemption is None:
                return False, swap_out, shift
            victim, position, swapped = preemption
            preempted.append(victim)
            swap_out += swapped
            if victim is request:
                return False, swap_out, shift
            if position < index - shift:
                shift += 1
        return True, swap_out, shift

    def _finish_batch(self, now: int, budget: int, chosen: list[Request], tokens: list[int],
                      decode: list[bool], preempted: list[Request], swap_out: int,
                      eager: list[int] | None = None,
                      stream_total: int | None = None) -> Batch | None:
        """Admit waiting requests into the rest of the budget and make the batch (streaming
        mode: `eager` lists the entries so far that do not stream, which the admitted ones
        join, and `stream_total` is the streaming entries' context total when known)."""
        kv = self.kv
        in_flight = self.in_flight
        before = len(chosen)
        moved = (0, 0)
        if not preempted:
            moved = self._admit(budget, chosen, tokens, decode, now)
        if not chosen:
            return None
        batch = Batch(self.next_batch_id, chosen, tokens, decode,
                      num_preempted=len(preempted), preempted=preempted)
        if eager is not None:
            eager += range(before, len(chosen))
            batch.eager = eager
            batch.decode_lens = self._decode_lens(chosen, decode, eager, stream_total)
        if swap_out or moved[0]:
            batch.swap_out_bytes, batch.swap_in_bytes = swap_out, moved[0]
            batch.swap_target = kv.swap.target
        if moved[1]:
            batch.recall_bytes, batch.recall_target = moved[1], kv.tier.target
        self.next_batch_id += 1
        if self.options.pipelined:
            in_flight.update(map(id, chosen))
        return batch

    def _decode_lens(self, chosen: list[Request], decode: list[bool], eager: list[int],
                     stream_total: int | None) -> DecodeLens:
        """The decode entries' context lengths: the streaming ones' by their total, listed
        only if a perf model iterates them."""
        stream = self.stream
        assert stream is not None
        step = stream.done
        known = {i: chosen[i].num_tokens for i in eager if decode[i]}
        skipped = frozenset(eager)
        if stream_total is None:
            stream_total = sum(r.stream_base + step for i, r in enumerate(chosen)
                               if i not in skipped)
        count = len(chosen) - len(eager) + len(known)
        return DecodeLens(count, stream_total + sum(known.values()),
                          partial(listed_lens, chosen, step, known, skipped))

    def _form_streaming(self, now: int) -> Batch | None:
        """`_form` without per-request work for streaming decodes.

        When the whole running list fits the token budget and the free blocks, the walk of
        `_form` would take every request with no preemption: the batch is the running list,
        the requests starting a block get it in place and keep streaming. Otherwise the walk is
        done exactly, with runs of streaming requests between the others taken whole.
        """
        stream = self.stream
        assert stream is not None
        due = stream.needing_blocks()
        self.eager.sort(key=SEQ)
        batch = self._form_whole(now, due)
        if batch is not None:
            return batch
        for request in due:
            stream.stop(request)
            self.eager.append(request)
        self.eager.sort(key=SEQ)
        budget = self.options.max_num_batched_tokens
        running = self.running
        chosen: list[Request] = []
        tokens: list[int] = []
        decode: list[bool] = []
        preempted: list[Request] = []
        eager: list[int] = []
        swap_out = 0
        index = 0
        for request in [*self.eager, None]:
            if request is None:
                at = len(running)
            else:
                at = bisect_left(running, request.seq, key=SEQ)
                if at == len(running) or running[at] is not request:
                    continue  # preempted while this batch formed
            if at > index:
                take = min(at - index, budget)
                run = running[index:index + take]
                chosen += run
                tokens += repeat(1, take)
                decode += repeat(True, take)
                budget -= take
                index += take
            if request is None or budget <= 0:
                break
            count, is_decode = self._chunk(request, budget)
            allocated, swapped, _ = self._allocate(request, count, index, chosen, preempted)
            swap_out += swapped
            if not allocated:
                break
            eager.append(len(chosen))
            chosen.append(request)
            tokens.append(count)
            decode.append(is_decode)
            budget -= count
            index += 1
        # Requests this batch leaves out are advanced one by one until they stream again.
        for request in running[index:]:
            if request.stream_from >= 0:
                stream.stop(request)
                self.eager.append(request)
        return self._finish_batch(now, budget, chosen, tokens, decode, preempted, swap_out,
                                  eager)

    def _form_whole(self, now: int, due: list[Request]) -> Batch | None:
        """The batch of every running request when the walk of `_form` would take them all
        without preempting, else None (nothing changed). `due` are the streaming requests that
        start a KV block in this step. Only the last running request may have its prompt chunk
        cut by the budget (as the walk cuts it)."""
        stream = self.stream
        assert stream is not None
        kv = self.kv
        running = self.running
        budget = self.options.max_num_batched_tokens
        blocks = len(due)  # one more each
        taken: list[tuple[Request, int, int, bool]] = []
        after = 0  # the running index after the last request that does not stream
        for request in self.eager:
            at = bisect_left(running, request.seq, key=SEQ)
            budget -= at - after  # the streaming run before it: one token each
            if budget <= 0:
                return None  # the walk would stop before this request
            count, is_decode = self._chunk(request, budget)
            budget -= count
            blocks += max(0, kv.blocks_for(request.computed + count) - request.blocks)
            taken.append((request, at, count, is_decode))
            after = at + 1
        budget -= len(running) - after
        if budget < 0 or blocks > kv.free_blocks:
            return None
        step = stream.done
        stream.grow(due, kv)
        chosen = running[:]
        tokens = [1] * len(chosen)
        decode = [True] * len(chosen)
        eager = []
        for request, at, count, is_decode in taken:
            kv.allocate_slots(request, request.computed + count)
            eager.append(at)
            tokens[at] = count
            decode[at] = is_decode
        return self._finish_batch(now, budget, chosen, tokens, decode, [], 0, eager,
                                  stream.base_total + stream.streaming * step)

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
                if self.warn_once is not None:
                    self.warn_once(f"request {request.rid}: prompt of {count} tokens exceeds "
                                   f"the {self.options.max_num_batched_tokens}-token budget with "
                                   "chunked prefill off; such prompts run alone (vLLM refuses "
                                   "these limits; said once)")
                    self.warn_once = None
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
            request.seq = self.next_seq
            self.next_seq += 1
            if self.stream is not None:
                self.eager.append(request)
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
        if self.stream is not None:
            return self._update_streaming(batch, now)
        finished = advance_tokens(batch, now)
        leaving = hand_off(batch) if self.options.handoff_after_prefill else []
        if finished or leaving:
            for request in (*finished, *leaving):
                self.kv.finish(request)
            gone = set(map(id, leaving))
            self.running = [r for r in self.running if r.end < 0 and id(r) not in gone]
        return finished

    def _update_streaming(self, batch: Batch, now: int) -> list[Request]:
        """`update` for a batch formed by `_form_streaming`."""
        stream = self.stream
        assert stream is not None and batch.eager is not None
        step = stream.complete_step(now)
        requests, counts = batch.requests, batch.tokens
        eager = [requests[i] for i in batch.eager]
        finished = advance_entries(batch, eager, [counts[i] for i in batch.eager], now)
        # One token per streaming request, all after the same gap (they were in the last step).
        batch.shared_count = len(requests) - len(eager)
        batch.shared_gap = stream.gaps[-1]
        batch.sampled += batch.shared_count
        streamed = stream.finishing(step)
        for request in streamed:
            stream.stop(request)
            request.end = now
        if streamed:
            finished = sorted(finished + streamed, key=SEQ) if finished else streamed
        for request in eager:
            # Decoding on from a token sampled now: stream from the next step.
            if request.end < 0 and request.last_token == now and \
                    request.computed + 1 == request.num_tokens:
                stream.start(request)
        if finished:
            running = self.running
            for request in finished:
                self.kv.finish(request)
                del running[bisect_left(running, request.seq, key=SEQ)]
        self.eager = [r for r in self.eager if r.stream_from < 0 and r.end < 0]
        stream.trim(self.running)
        return finished
