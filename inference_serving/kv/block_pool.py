"""Fixed-size KV blocks of one instance: ids, reference counts, the hash map of cached blocks
and the free queue ordered by release (simulated) time."""

from __future__ import annotations

from collections import OrderedDict


class BlockPool:
    """Blocks 0..n-1. A block is free when no request references it; a free block that still
    holds a cached prefix keeps its key until it is handed out again (LRU: the block released
    earliest is reused first).

    Only blocks handed out at least once are stored: the free queue starts as 0..n-1 in order
    and released blocks join its end, so the never-used blocks `fresh`..n-1 are always its
    front. A pool of millions of blocks (a large device memory) costs nothing until used.
    """

    def __init__(self, num_blocks: int) -> None:
        self.num_blocks = num_blocks
        self.ref: dict[int, int] = {}  # block -> references (absent: none)
        self.key: dict[int, int] = {}  # block -> the prefix it caches (absent: none)
        self.cached: dict[int, int] = {}  # block key -> block id
        self.free: OrderedDict[int, None] = OrderedDict()  # released blocks, oldest first
        self.fresh = 0  # blocks fresh.. were never handed out
        self.num_cached_free = 0  # free blocks still holding a cached prefix

    @property
    def num_free(self) -> int:
        """Blocks no request references (cached ones included)."""
        return len(self.free) + self.num_blocks - self.fresh

    def refs(self, block: int) -> int:
        """The references to `block`."""
        return self.ref.get(block, 0)

    def lookup(self, key: int) -> int | None:
        """The block caching `key`, if any."""
        return self.cached.get(key)

    def touch(self, block: int) -> None:
        """One more reference to `block` (a prefix hit); a free block leaves the free queue."""
        count = self.ref.get(block, 0)
        if not count:
            del self.free[block]
            self.num_cached_free -= 1  # a hit block is always a cached one
        self.ref[block] = count + 1

    def take(self) -> int:
        """A new block for a request: the least recently released free block, its old cache
        entry evicted."""
        if self.fresh < self.num_blocks:
            block = self.fresh
            self.fresh = block + 1
        else:
            block, _ = self.free.popitem(last=False)
            key = self.key.pop(block, None)
            if key is not None:
                self.num_cached_free -= 1
                if self.cached.get(key) == block:
                    del self.cached[key]
        self.ref[block] = 1
        return block

    def release(self, blocks: list[int]) -> None:
        """Drop one reference to each block, tail first (vLLM: a sequence's last blocks are the
        first evicted)."""
        ref, free, key = self.ref, self.free, self.key
        for block in reversed(blocks):
            count = ref[block] - 1
            if count:
                ref[block] = count
                continue
            del ref[block]
            free[block] = None
            if block in key:
                self.num_cached_free += 1

    def cache(self, block: int, key: int) -> None:
        """Publish `block` as holding prefix `key` (the first block with a key keeps it)."""
        if block not in self.key and key not in self.cached:
            self.key[block] = key
            self.cached[key] = block

    def check(self, held: int) -> str | None:
        """Reference counts positive, free blocks unreferenced, `held` references in all."""
        if any(count <= 0 for count in self.ref.values()):
            return "a block reference count is not positive"
        if any(block in self.ref for block in self.free):
            return "a block is both free and referenced"
        if self.num_cached_free != sum(1 for b in self.free if b in self.key):
            return "the count of cached free blocks is wrong"
        total = sum(self.ref.values())
        if held != total:
            return f"requests hold {held} block references, the pool counts {total}"
        return None
