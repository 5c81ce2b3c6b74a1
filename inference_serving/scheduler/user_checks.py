"""Checks on a user scheduler's answers (not one of the shipped classes): the simulator
trusts the shipped ones, and a user's batch that cannot progress or a wrong list of finished
requests would otherwise hang the run or corrupt its counts."""

from __future__ import annotations

from inference_serving.request import Request
from inference_serving.scheduler.base import Batch
from inference_serving.scheduler.registry import SCHEDULERS
from llmsim_core.errors import InputError
from llmsim_core.plugins import shown


def is_user_scheduler(scheduler: object) -> bool:
    """True for a scheduler that is not exactly a shipped class (a CUSTOM one, subclasses too)."""
    return type(scheduler) not in SCHEDULERS.values()


def check_user_batch(scheduler: object, batch: object) -> None:
    """A user scheduler's batch must be a `Batch` whose every entry computes at least one of
    its request's uncomputed tokens (else the run could not progress)."""
    name = type(scheduler).__name__
    if not isinstance(batch, Batch):
        problem = f"returned {shown(batch, 40)} ({type(batch).__name__}), not a Batch or None"
    elif not batch.requests:
        problem = "returned a batch without requests (return None when nothing can run)"
    elif not len(batch.requests) == len(batch.tokens) == len(batch.decode):
        problem = (f"returned a batch of {len(batch.requests)} requests, {len(batch.tokens)} "
                   f"token counts and {len(batch.decode)} decode flags")
    elif len({id(r) for r in batch.requests}) != len(batch.requests):
        problem = "returned a batch holding one request twice"
    elif {id(r) for r in batch.preempted} & {id(r) for r in batch.requests}:
        problem = "returned a batch that runs a request it also lists as preempted"
    elif batch.num_preempted != len(batch.preempted):
        problem = (f"returned a batch with num_preempted {batch.num_preempted!r} but "
                   f"{len(batch.preempted)} preempted requests")
    elif any(type(n) is not int or n < 0 for n in (batch.swap_in_bytes, batch.swap_out_bytes,
                                                    batch.recall_bytes)):
        problem = "returned a batch with swap or recall bytes that are not whole numbers >= 0"
    else:
        problem = next((f"gave request {r.rid} {n!r} tokens, outside 1..{r.num_tokens - r.computed}"
                        f" (its uncomputed tokens)" for r, n in zip(batch.requests, batch.tokens,
                                                                     strict=True)
                        if type(n) is not int or not 1 <= n <= r.num_tokens - r.computed), None)
        problem = problem or next((
            f"marked request {r.rid} {'a decode' if d else 'not a decode'}, but it "
            f"{'is' if not d else 'is not'} one (a decode computes the last token of a "
            "prefilled request)" for r, n, d in zip(batch.requests, batch.tokens, batch.decode,
                                                    strict=True)
            if bool(d) != (r.prefilled and n == 1 and r.computed + 1 == r.num_tokens)), None)
    if problem is not None:
        raise InputError(f"{name}.schedule {problem}", "--scheduler CUSTOM",
                         "follow the Scheduler interface of inference_serving/scheduler/base.py")


def _as_traced(request: Request, trace: dict[int, tuple[int, int, int]]) -> bool:
    """True when `request` still has its id, lengths and arrival of the trace (plain ints)."""
    fields = (request.rid, request.prompt, request.output, request.arrival)
    if any(type(value) is not int for value in fields):
        return False
    return trace.get(request.rid) == fields[1:]


def check_user_finished(scheduler: object, batch: Batch, done: object,
                        trace: dict[int, tuple[int, int, int]]) -> None:
    """A user scheduler's `update` must return each request of the batch that finished, once,
    count the tokens it sampled, and leave each request's trace lengths and arrival (`trace`:
    request id to prompt, output, arrival) as they were."""
    name = type(scheduler).__name__
    if not isinstance(done, list):
        problem = f"returned {shown(done, 40)} ({type(done).__name__}), not a list of requests"
    else:
        members = {id(r) for r in batch.requests}
        problem = next((f"returned request {shown(getattr(r, 'rid', r), 40)}, which " + (
            "is not in the batch" if id(r) not in members else "has not finished")
            for r in done if id(r) not in members or r.end < 0), None)
        if problem is None and len({id(r) for r in done}) != len(done):
            problem = "returned a finished request twice"
        if problem is None and (type(batch.sampled) is not int or
                                not 0 <= batch.sampled <= len(batch.requests)):
            problem = (f"set the batch's sampled tokens to {shown(batch.sampled, 40)}, outside "
                       f"0..{len(batch.requests)} (one at most per request)")
        problem = problem or next((
            f"changed the id, prompt, output or arrival of a request to "
            f"{shown((r.rid, r.prompt, r.output, r.arrival), 80)}" for r in done
            if not _as_traced(r, trace)), None)
    if problem is not None:
        raise InputError(f"{name}.update {problem}", "--scheduler CUSTOM",
                         "return the batch's requests that generated their last token, once")
