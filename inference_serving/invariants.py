"""Simulation invariants, checked under --check-invariants and by the tests."""

from __future__ import annotations

from inference_serving.instance import Instance
from inference_serving.request import Request


class InvariantError(AssertionError):
    """An internal consistency rule was broken (a simulator bug, not bad input)."""


def check_instance(inst: Instance) -> None:
    """KV blocks in use stay within [0, capacity] and equal the blocks requests hold."""
    kv = inst.kv
    if not 0 <= kv.free_blocks <= kv.num_blocks:
        raise InvariantError(f"instance {inst.index}: free blocks {kv.free_blocks} outside "
                             f"[0, {kv.num_blocks}]")
    held = sum(r.blocks for r in inst.scheduler.requests())
    if held != kv.used_blocks:
        raise InvariantError(f"instance {inst.index}: requests hold {held} blocks, pool says "
                             f"{kv.used_blocks}")
    if inst.memory_used_bytes() > inst.spec.npu_mem.size_bytes:
        raise InvariantError(f"instance {inst.index}: device memory over capacity")


def check_finished(r: Request) -> None:
    """A finished request has exactly its requested tokens and coherent times (every request
    is checked as it finishes; the run then checks that all of them finished)."""
    if r.generated != r.output or r.end < 0:
        raise InvariantError(f"request {r.rid}: generated {r.generated} of {r.output}")
    if len(r.itl) != r.output - 1:
        raise InvariantError(f"request {r.rid}: {len(r.itl)} ITL samples for {r.output} "
                             "tokens")
    if not r.arrival <= r.first_scheduled <= r.first_token <= r.end:
        raise InvariantError(f"request {r.rid}: times out of order")
    if r.first_token + sum(r.itl) != r.end:
        raise InvariantError(f"request {r.rid}: ITL gaps do not add up to the end time")
