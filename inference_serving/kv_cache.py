"""Paged KV-cache block pool of one instance (exact free-block counts)."""

from __future__ import annotations

from inference_serving.request import Request


class KVCacheManager:
    """Hands out fixed-size KV blocks to requests; capacity is per NPU, in blocks."""

    def __init__(self, num_blocks: int, block_size: int) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.free_blocks = num_blocks

    @property
    def used_blocks(self) -> int:
        """Blocks currently held by requests."""
        return self.num_blocks - self.free_blocks

    def blocks_for(self, tokens: int) -> int:
        """Blocks needed to hold `tokens` tokens."""
        return -(-tokens // self.block_size)

    def allocate_slots(self, request: Request, total_tokens: int) -> bool:
        """Grow `request` to hold `total_tokens` tokens; False (and no change) if it cannot."""
        needed = self.blocks_for(total_tokens) - request.blocks
        if needed <= 0:
            return True
        if needed > self.free_blocks:
            return False
        self.free_blocks -= needed
        request.blocks += needed
        return True

    def free(self, request: Request) -> None:
        """Return all of `request`'s blocks to the pool."""
        self.free_blocks += request.blocks
        request.blocks = 0
