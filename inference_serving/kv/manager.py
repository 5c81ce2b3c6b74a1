"""The KV-cache manager interface and its plain form: exact free-block counts, no caching.

A scheduler talks only to a manager: `get_computed_blocks` (the prefix a new request finds
cached), `allocate_slots` (grow a request's blocks), `free`, and the offload operations
`swap_out` / `swap_in` (preempted KV parked on the swap space). With prefix caching off this
counting manager is used: it hashes nothing and costs a few integer operations per call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from inference_serving.kv.swap import SwapSpace
from inference_serving.kv.tier import PrefixTier
from inference_serving.request import Request


@dataclass(frozen=True, slots=True)
class PrefixHit:
    """What a new request finds cached: device blocks it can share (`blocks`, covering
    `device_tokens`) and `tier_tokens` more recalled from the second tier (`recall_bytes` per
    NPU)."""

    blocks: tuple[int, ...] = ()
    device_tokens: int = 0
    tier_tokens: int = 0
    recall_bytes: int = 0

    @property
    def tokens(self) -> int:
        """Prompt tokens the request does not compute."""
        return self.device_tokens + self.tier_tokens


NO_HIT = PrefixHit()


@dataclass(slots=True)
class PrefixStats:
    """Cumulative prompt tokens looked up and hit per tier, counted when a prompt is first
    scheduled."""

    requested: int = 0
    device_hits: int = 0
    tier_hits: int = 0
    recalled_bytes: int = 0  # per-NPU bytes loaded from the second tier

    def count(self, request: Request, hit: PrefixHit) -> None:
        """Account `request`'s prompt and its hit."""
        self.requested += request.prompt
        self.device_hits += hit.device_tokens
        self.tier_hits += hit.tier_tokens
        self.recalled_bytes += hit.recall_bytes


class KVCacheManager:
    """Hands out fixed-size KV blocks to requests; capacity is per NPU, in blocks."""

    scheme: ClassVar[str] = "no caching"
    hits_are_prior_kv: ClassVar[bool] = True
    prefix_caching: ClassVar[bool] = False

    def __init__(self, num_blocks: int, block_size: int, swap: SwapSpace | None = None,
                 block_bytes: int = 0, npu_num: int = 1) -> None:
        self._setup(num_blocks, block_size, swap, block_bytes, npu_num, None)
        self.free_blocks = num_blocks

    def _setup(self, num_blocks: int, block_size: int, swap: SwapSpace | None,
               block_bytes: int, npu_num: int, tier: PrefixTier | None) -> None:
        """The state every manager keeps (the caching managers derive `free_blocks`)."""
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.swap = swap
        self.block_bytes = block_bytes  # per NPU
        self.npu_num = npu_num
        self.stats = PrefixStats()
        self.tier = tier

    @property
    def used_blocks(self) -> int:
        """Blocks currently held by requests."""
        return self.num_blocks - self.free_blocks

    @property
    def cached_blocks(self) -> int:
        """Free blocks still holding a cached prefix (none without prefix caching)."""
        return 0

    def available_blocks(self) -> int:
        """Blocks a new allocation may take (free ones, plus reclaimable cached ones)."""
        return self.free_blocks

    def blocks_for(self, tokens: int) -> int:
        """Blocks needed to hold `tokens` tokens."""
        return -(-tokens // self.block_size)

    def get_computed_blocks(self, request: Request) -> PrefixHit:
        """The cached prefix of a request about to be admitted (none here)."""
        return NO_HIT

    def count_hit(self, request: Request, hit: PrefixHit) -> None:
        """Account a prompt scheduled for the first time and what it hit, per tier."""
        self.stats.count(request, hit)
        tier = self.tier
        if tier is not None:
            tier.requested += request.prompt
            tier.hits += hit.tier_tokens
            tier.recalled_bytes += hit.recall_bytes

    def allocate_slots(self, request: Request, total_tokens: int, hit: PrefixHit = NO_HIT) -> bool:
        """Grow `request` to hold `total_tokens` tokens; False (and no change) if it cannot."""
        needed = self.blocks_for(total_tokens) - request.blocks
        if needed <= 0:
            return True
        if needed > self.free_blocks:
            return False
        self.free_blocks -= needed
        request.blocks += needed
        return True

    def grow(self, requests: list[Request]) -> None:
        """Give each of `requests` one more block (the caller checked that they fit)."""
        if self.prefix_caching:
            for request in requests:  # a caching manager tracks which blocks
                self.allocate_slots(request, (request.blocks + 1) * self.block_size)
            return
        for request in requests:
            request.blocks += 1
        self.free_blocks -= len(requests)

    def free(self, request: Request) -> None:
        """Return all of `request`'s blocks to the pool."""
        self.free_blocks += request.blocks
        request.blocks = 0

    def finish(self, request: Request) -> None:
        """A request completed (or left for another instance): release its blocks."""
        self.free(request)

    def swap_out(self, request: Request) -> int | None:
        """Park `request`'s KV on the swap space and free its blocks; the per-NPU bytes moved,
        or None (nothing changed) when the swap space is full or absent."""
        swap = self.swap
        per_npu = request.blocks * self.block_bytes
        if swap is None or swap.used_bytes + per_npu * self.npu_num > swap.capacity_bytes:
            return None
        swap.used_bytes += per_npu * self.npu_num
        swap.out_bytes += per_npu
        request.swap_bytes = per_npu
        self.free(request)
        request.swapped = True
        return per_npu

    def swap_in(self, request: Request) -> int:
        """Bring a swapped request's KV back (its blocks are allocated by the caller); the
        per-NPU bytes moved."""
        swap = self.swap
        per_npu = request.swap_bytes
        if swap is not None:
            swap.used_bytes -= per_npu * self.npu_num
            swap.in_bytes += per_npu
        request.swap_bytes = 0
        request.swapped = False
        return per_npu

    def check(self, held: int) -> str | None:
        """An inconsistency between the pool and the `held` blocks of its requests, if any."""
        if not 0 <= self.free_blocks <= self.num_blocks:
            return f"free blocks {self.free_blocks} outside [0, {self.num_blocks}]"
        if held != self.used_blocks:
            return f"requests hold {held} blocks, pool says {self.used_blocks}"
        return None
