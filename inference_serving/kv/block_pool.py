"""Fixed-size KV blocks of one instance: ids, reference counts, the hash map of cached blocks
and the free queue ordered by release (simulated) time."""

from __future__ import annotations

from collections import OrderedDict


class BlockPool:
    """Blocks 0..n-1. A block is free when no request references it; a free block that still
    holds a cached prefix keeps its key until it is handed out again (LRU: the block released
    earliest is reused first)."""

    def __init__(self, num_blocks: int) -> None:
        self.num_blocks = num_blocks
        self.ref = [0] * num_blocks
        self.key: list[int | None] = [None] * num_blocks
        self.cached: dict[int, int] = {}  # block key -> block id
        self.free: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))
        self.num_cached_free = 0  # free blocks still holding a cached prefix

    @property
    def num_free(self) -> int:
        """Blocks no request references (cached ones included)."""
        return len(self.free)

    def lookup(self, key: int) -> int | None:
        """The block caching `key`, if any."""
        return self.cached.get(key)

    def touch(self, block: int) -> None:
        """One more reference to `block` (a prefix hit); a free block leaves the free queue."""
        if not self.ref[block]:
            del self.free[block]
            self.num_cached_free -= 1  # a hit block is always a cached one
        self.ref[block] += 1

    def take(self) -> int:
        """A new block for a request: the least recently released free block, its old cache
        entry evicted."""
        block, _ = self.free.popitem(last=False)
        key = self.key[block]
        if key is not None:
            self.num_cached_free -= 1
            if self.cached.get(key) == block:
                del self.cached[key]
            self.key[block] = None
        self.ref[block] = 1
        return block

    def release(self, blocks: list[int]) -> None:
        """Drop one reference to each block, tail first (vLLM: a sequence's last blocks are the
        first evicted)."""
        ref, free, key = self.ref, self.free, self.key
        for block in reversed(blocks):
            ref[block] -= 1
            if not ref[block]:
                free[block] = None
                if key[block] is not None:
                    self.num_cached_free += 1

    def cache(self, block: int, key: int) -> None:
        """Publish `block` as holding prefix `key` (the first block with a key keeps it)."""
        if self.key[block] is None and key not in self.cached:
            self.key[block] = key
            self.cached[key] = block
