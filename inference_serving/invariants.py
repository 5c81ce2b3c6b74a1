"""Simulation invariants, checked under --check-invariants and by the tests."""

from __future__ import annotations

from inference_serving.instance import Instance
from inference_serving.request import Request


class InvariantError(AssertionError):
    """An internal consistency rule was broken (a simulator bug, not bad input)."""


def check_instance(inst: Instance) -> None:
    """The KV manager agrees with its requests (block counts, reference counts, free blocks
    unreferenced, tier usage within capacity) and device memory stays within capacity."""
    kv = inst.kv
    held = sum(r.blocks for r in inst.scheduler.requests())
    problem = kv.check(held)
    if problem is not None:
        raise InvariantError(f"instance {inst.index}: {problem}")
    swap = kv.swap
    if swap is not None and not 0 <= swap.used_bytes <= swap.capacity_bytes:
        raise InvariantError(f"instance {inst.index}: swap space holds {swap.used_bytes} bytes "
                             f"outside [0, {swap.capacity_bytes}]")
    if inst.memory_used_bytes() > inst.spec.npu_mem.size_bytes:
        raise InvariantError(f"instance {inst.index}: device memory over capacity")


def check_finished(r: Request) -> None:
    """A finished request has exactly its requested tokens and coherent times and holds no KV
    block or swap space any more (every request is checked as it finishes; the run then
    checks that all of them finished)."""
    if r.blocks or r.block_ids or r.swap_bytes:
        raise InvariantError(f"request {r.rid}: still holds KV after finishing")
    if r.generated != r.output or r.end < 0:
        raise InvariantError(f"request {r.rid}: generated {r.generated} of {r.output}")
    if len(r.itl) != r.output - 1:
        raise InvariantError(f"request {r.rid}: {len(r.itl)} ITL samples for {r.output} "
                             "tokens")
    if not r.arrival <= r.first_scheduled <= r.first_token <= r.end:
        raise InvariantError(f"request {r.rid}: times out of order")
    if r.first_token + sum(r.itl) != r.end:
        raise InvariantError(f"request {r.rid}: ITL gaps do not add up to the end time")
