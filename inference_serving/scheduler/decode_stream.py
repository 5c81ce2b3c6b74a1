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
        self.offset = 0
        self.block_due: dict[int, list[Request]] = {}
        self.finish_due: dict[int, list[Request]] = {}

    def complete_step(self, now: int) -> int:
        """Record the end of the current step at `now`; return that step's index."""
        self.gaps.append(now - self.last_end)
        self.last_end = now
        step = self.done
        self.done = step + 1
        return step

    def start(self, request: Request) -> None:
        """Stream `request` from the next step: it got a token in the step just completed and
        is one decode token short of its sequence."""
        s0 = self.done
        request.stream_from = s0
        request.stream_base = request.num_tokens - s0
        finish = s0 + request.output - request.generated - 1
        request.due_finish = finish
        self.finish_due.setdefault(finish, []).append(request)
        # At step s the sequence is stream_base + s tokens long; the block after the last one
        # it holds is needed at the step where that length first exceeds what they hold.
        block = s0 + request.blocks * self.block_size + 1 - request.num_tokens
        request.due_block = block
        if block <= finish:
            self.block_due.setdefault(block, []).append(request)

    def next_block(self, request: Request) -> None:
        """`request` got the block its next token starts: due again `block_size` steps on."""
        due = request.due_block + self.block_size
        request.due_block = due
        if due <= request.due_finish:
            self.block_due.setdefault(due, []).append(request)

    def sync(self, request: Request) -> None:
        """Bring a streaming request's fields up to the completed steps (it keeps streaming)."""
        s0 = request.stream_from
        gained = self.done - s0
        if gained > 0:
            request.num_tokens += gained
            request.computed += gained
            request.generated += gained
            start = s0 - self.offset
            request.itl += self.gaps[start:start + gained]
            request.last_token = self.last_end
            request.stream_from = self.done

    def stop(self, request: Request) -> None:
        """Bring `request` up to date and advance it per iteration from now on."""
        self.sync(request)
        request.stream_from = -1

    def needing_blocks(self) -> list[Request]:
        """The streaming requests whose next token, in the step being formed, starts a block."""
        step = self.done
        # A request that stopped and streamed again may be listed twice for the same step.
        return list({id(r): r for r in self.block_due.pop(step, ())
                     if r.stream_from >= 0 and r.due_block == step}.values())

    def finishing(self, step: int) -> list[Request]:
        """The streaming requests that sampled their last token in `step`, in running order."""
        due = {id(r): r for r in self.finish_due.pop(step, ())
               if r.stream_from >= 0 and r.due_finish == step}
        return sorted(due.values(), key=SEQ)

    def contexts(self, run: list[Request]) -> list[int]:
        """Sequence lengths of streaming requests in the step being formed."""
        step = self.done
        return [r.stream_base + step for r in run]

    def trim(self, running: list[Request]) -> None:
        """Every TRIM_EVERY steps, drop the gaps older than every streaming request's start."""
        if self.done % TRIM_EVERY:
            return
        oldest = min((r.stream_from for r in running if r.stream_from >= 0), default=self.done)
        cut = oldest - self.offset
        if cut > 0:
            del self.gaps[:cut]
            self.offset = oldest
