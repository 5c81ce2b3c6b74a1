"""The scheduler interface and the batch it produces."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from inference_serving.request import Request
from llmsim_core.iteration_plan import HOST


@dataclass(slots=True)
class Batch:
    """One iteration's work: requests and the tokens each computes.

    `decode[i]` is True when entry i is a one-token decode of an already prefilled request.
    """

    batch_id: int
    requests: list[Request]
    tokens: list[int]
    decode: list[bool]
    num_preempted: int = 0
    swap_in_bytes: int = 0
    swap_out_bytes: int = 0
    sampled: int = 0
    recall_bytes: int = 0  # per NPU, prefix KV recalled from the second tier
    recall_target: str = HOST
    swap_target: str = HOST  # where swap_in / swap_out bytes go
    # Per entry, prefix-hit tokens attention does not see as prior KV (existing simulator's
    # accounting), or None.
    hidden_kv: list[int] | None = None
    prompt_done: list[Request] = field(default_factory=list)
    handoff: list[Request] = field(default_factory=list)
    preempted: list[Request] = field(default_factory=list)  # the num_preempted victims
    # With streaming decodes (scheduler/decode_stream.py): the decode entries' sequence
    # lengths as this iteration sees them (a streaming request's own fields lag), and the
    # indices of the entries advanced one by one (all prefills among them; the others stream).
    # None: every entry's fields are current.
    decode_lens: Sequence[int] | None = None
    eager: list[int] | None = None
    # The inter-token gaps this iteration sampled: one by one, and the streaming decodes' one
    # shared gap and their number.
    gaps: list[int] = field(default_factory=list)
    shared_gap: int = 0
    shared_count: int = 0

    @property
    def total_tokens(self) -> int:
        """T: tokens computed in this iteration."""
        return sum(self.tokens)


@dataclass(frozen=True, slots=True)
class SchedulerOptions:
    """Per-instance scheduling knobs (CLI flags)."""

    max_num_batched_tokens: int
    max_num_seqs: int
    block_size: int
    chunked_prefill: bool = True
    long_prefill_token_threshold: int = 0
    prioritize_prefill: bool = False
    gen_only: bool = False
    handoff_after_prefill: bool = False  # a P/D prefill instance passes requests on
    pipelined: bool = False  # several batches in flight: a request joins one at a time
    preemption: str = "recompute"  # vllm: what preemption does with the victim's KV (or swap)
    # vLLM >= 0.19 admits a waiting request only when its whole sequence's blocks are free.
    reserve_full_input: bool = False
    limits_source: str = ""  # where max_num_seqs / max_num_batched_tokens came from
    # Advance steady decodes lazily (scheduler/decode_stream.py); the builder sets it where
    # nothing outside the scheduler reads running requests between iterations.
    stream_decodes: bool = False


@dataclass(frozen=True, slots=True)
class SchedulerResources:
    """What a scheduler may use besides its KV pool: the bytes of one KV block per NPU, the
    instance's NPU count, its node's host memory (for swapped-out KV) and a warning sink."""

    block_bytes: int
    npu_num: int
    host_capacity: int
    warn: Callable[[str], None]


class Scheduler(Protocol):
    """Forms batches for one instance and applies their results.

    A scheduler class is constructed as `cls(options: SchedulerOptions, kv: KVCacheManager,
    resources: SchedulerResources)`. `legacy_limits` True gives it the existing simulator's
    option meanings (whole prompts only, `--max-batch 0` = unlimited); False the vLLM ones.
    A new policy is one class and one line in `scheduler/registry.py::SCHEDULERS`;
    `--scheduler CUSTOM --custom-scheduler pkg.mod:Class` loads one from outside (example:
    `examples/custom_scheduler.py`).
    """

    legacy_limits: ClassVar[bool]
    host_bytes: int  # host memory held by this instance's swapped-out KV

    def add(self, request: Request) -> None:
        """Queue an arrived request."""
        ...

    def schedule(self, now: int) -> Batch | None:
        """Form the next batch at time `now`, or None when there is nothing to run."""
        ...

    def update(self, batch: Batch, now: int) -> list[Request]:
        """Apply a completed batch at time `now`; return the requests that finished."""
        ...

    def num_requests(self) -> int:
        """Requests waiting or running on this instance."""
        ...

    def requests(self) -> list[Request]:
        """Every request waiting or running on this instance."""
        ...


def advance_tokens(batch: Batch, now: int) -> list[Request]:
    """Apply a completed iteration to its requests; return those that finished.

    Each entry's computed tokens grow by its scheduled count; when that reaches the sequence
    length, one token is sampled: the first token (TTFT) or an ITL sample. A partial prefill
    chunk samples nothing.
    """
    return advance_entries(batch, batch.requests, batch.tokens, now)


def advance_entries(batch: Batch, requests: list[Request], counts: list[int],
                    now: int) -> list[Request]:
    """`advance_tokens` for the given entries of `batch` only."""
    finished: list[Request] = []
    gaps = batch.gaps
    sampled = 0
    # The hot loop of a run (once per request and iteration): attributes read once.
    for request, count in zip(requests, counts, strict=True):
        computed = request.computed + count
        request.computed = computed
        tokens = request.num_tokens
        if computed < tokens:
            continue
        request.num_tokens = tokens + 1
        generated = request.generated + 1
        request.generated = generated
        sampled += 1
        if request.first_token < 0:
            request.first_token = now
            if not request.prefilled:
                batch.prompt_done.append(request)
            request.prefilled = True
        else:
            gap = now - request.last_token
            request.itl.append(gap)
            gaps.append(gap)
        request.last_token = now
        if generated >= request.output:
            request.end = now
            finished.append(request)
    batch.sampled += sampled
    return finished


def admit(request: Request, options: SchedulerOptions) -> Request:
    """An arrived request as the scheduler queues it (`--gen`: its prompt counts as already
    prefilled)."""
    if options.gen_only:
        request.computed = request.prompt - 1
        request.prefilled = True
    return request


def hand_off(batch: Batch) -> list[Request]:
    """On a P/D prefill instance: the requests whose prompt just completed and that still
    have tokens to generate leave for a decode instance (collected in `batch.handoff`)."""
    batch.handoff = [r for r in batch.prompt_done if r.end < 0]
    return batch.handoff
