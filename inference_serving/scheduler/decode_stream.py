"""Steady decodes without per-token work: requests advanced lazily from the iteration clock.

Under continuous batching most of a request's life is one decode token in every iteration.
Once a request got a token in step s0 - 1 and decodes in every step after, its state at any
later step follows from the step count alone: s - s0 more tokens, and inter-token gaps equal
to the iteration gaps of steps s0 … s - 1. A streaming request is therefore touched only at its
events: when it needs a new KV block (every `block_size` tokens), when it samples its last
token, when it is preempted or cut from a batch, or when someone reads it (`sync`). The
results are identical to advancing every request in every iteration.
"""

from __future__ import annotations

from array import array
from operator import attrgetter

from inference_serving.kv import KVCacheManager
from inference_serving.request import Request

SEQ = attrgetter("seq")
TRIM_EVERY = 1 << 16  # steps between drops of iteration gaps no streaming request still needs


class DecodeStream:
    """The iteration clock of one instance and the calendars of its streaming requests."""

    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        self.done = 0  # completed steps; the batch being formed is step `done`
        self.last_end = 0  # end time of the last completed step
        self.gaps = array("q")  # gaps[k - offset]: end of step k minus end of step k - 1
        self.texts: list[str] = []  # the same gaps formatted for the CSV
        self.offset = 0
        self.block_due: dict[int, list[Request]] = {}
        self.finish_due: dict[int, list[Request]] = {}
        # Streaming requests and the sum of their stream_base: their sequence lengths at step
        # s total base_total + streaming * s.
        self.streaming = 0
        self.base_total = 0

    def complete_step(self, now: int) -> int:
        """Record the end of the current step at `now`; return that step's index."""
        gap = now - self.last_end
        self.gaps.append(gap)
        self.texts.append(str(gap))
        self.last_end = now
        step = self.done
        self.done = step + 1
        return step

    def start(self, request: Request) -> None:
        """Stream `request` from the next step: it got a token in the step just completed and
        is one decode token short of its sequence."""
        s0 = self.done
        request.stream_from = s0
        base = request.stream_base = request.num_tokens - s0
        self.streaming += 1
        self.base_total += base
        finish = s0 + request.output - request.generated - 1
        request.due_finish = finish
        self.finish_due.setdefault(finish, []).append(request)
        # At step s the sequence is stream_base + s tokens long; the block after the last one
        # it holds is needed at the step where that length first exceeds what they hold.
        block = s0 + request.blocks * self.block_size + 1 - request.num_tokens
        request.due_block = block
        if block <= finish:
            self.block_due.setdefault(block, []).append(request)

    def sync(self, request: Request) -> None:
        """Bring a streaming request's fields up to the completed steps (it keeps streaming)."""
        s0 = request.stream_from
        gained = self.done - s0
        if gained > 0:
            request.num_tokens += gained
            request.computed += gained
            request.generated += gained
            start = s0 - self.offset
            itl = request.itl
            pieces = request.itl_text
            if pieces is None:
                pieces = request.itl_text = []
            if len(itl) > request.itl_texted:  # gaps sampled one by one since the last piece
                pieces.append(", ".join(map(str, itl[request.itl_texted:])))
            itl += self.gaps[start:start + gained]
            pieces.append(", ".join(self.texts[start:start + gained]))
            request.itl_texted = len(itl)
            request.last_token = self.last_end
            request.stream_from = self.done

    def stop(self, request: Request) -> None:
        """Bring `request` up to date and advance it per iteration from now on."""
        self.sync(request)
        request.stream_from = -1
        self.streaming -= 1
        self.base_total -= request.stream_base

    def needing_blocks(self) -> list[Request]:
        """The streaming requests whose next token, in the step being formed, starts a block."""
        step = self.done
        listed = self.block_due.pop(step, None)
        if listed is None:
            return []
        due = []
        for request in listed:
            if request.stream_from >= 0 and request.due_block == step:
                # Listed once: a request that stopped and streamed again may be in the list
                # twice. Every request returned is grown (due again later) or stopped.
                request.due_block = -1
                due.append(request)
        return due

    def finishing(self, step: int) -> list[Request]:
        """The streaming requests that sampled their last token in `step`, in running order."""
        due = {id(r): r for r in self.finish_due.pop(step, ())
               if r.stream_from >= 0 and r.due_finish == step}
        return sorted(due.values(), key=SEQ)

    def grow(self, due: list[Request], kv: KVCacheManager) -> None:
        """Give each of `due` (streaming, starting a block in this step) its block; they are
        due again `block_size` steps on."""
        if not due:
            return
        kv.grow(due)
        later = self.done + self.block_size
        again = []
        for request in due:
            request.due_block = later
            if later <= request.due_finish:
                again.append(request)
        if again:
            self.block_due.setdefault(later, []).extend(again)

    def trim(self, running: list[Request]) -> None:
        """Every TRIM_EVERY steps, drop the gaps older than every streaming request's start."""
        if self.done % TRIM_EVERY:
            return
        oldest = min((r.stream_from for r in running if r.stream_from >= 0), default=self.done)
        cut = oldest - self.offset
        if cut > 0:
            del self.gaps[:cut]
            del self.texts[:cut]
            self.offset = oldest


def listed_lens(chosen: list[Request], step: int, known: dict[int, int],
                skipped: frozenset[int]) -> tuple[int, ...]:
    """The decode context lengths of a batch formed at `step`: `known` ones by position, the
    streaming entries' from their base, the other `skipped` entries (prefills) left out."""
    return tuple(known[i] if i in known else r.stream_base + step
                 for i, r in enumerate(chosen) if i in known or i not in skipped)
