"""vLLM-style automatic prefix caching (serving.md §8.2) over a block pool."""

from __future__ import annotations

from typing import ClassVar

from inference_serving.kv.block_pool import BlockPool
from inference_serving.kv.hashing import chunk_keys, extend_hashes
from inference_serving.kv.manager import NO_HIT, KVCacheManager, PrefixHit
from inference_serving.kv.swap import SwapSpace
from inference_serving.kv.tier import PrefixTier
from inference_serving.request import Request

CHUNK_TOKENS = 256  # second-tier entry size (LMCache's default chunk)


class PrefixCachingManager(KVCacheManager):
    """Blocks with ids and reference counts; full blocks are published under their chained
    hash as soon as they are allocated for computation, stay cached at zero references and are
    reused least recently released first. A second tier, when given, receives every whole
    256-token chunk (write-through) and serves hits beyond the device hit by recall.

    A full-prefix hit still computes the last prompt token; requests without token ids never
    hit and are never published.
    """

    scheme: ClassVar[str] = "block pool, chained hashes"
    prefix_caching: ClassVar[bool] = True

    def __init__(self, num_blocks: int, block_size: int, bytes_per_token: int,
                 swap: SwapSpace | None = None, block_bytes: int = 0, npu_num: int = 1,
                 tier: PrefixTier | None = None) -> None:
        self._setup(num_blocks, block_size, swap, block_bytes, npu_num, tier)
        self.pool = BlockPool(num_blocks)
        self.bytes_per_token = bytes_per_token  # whole instance
        self.chunk_blocks = max(CHUNK_TOKENS // block_size, 1)

    @property
    def free_blocks(self) -> int:  # type: ignore[override]
        """Blocks no request references."""
        return self.pool.num_free

    @property
    def cached_blocks(self) -> int:
        """Free blocks still holding a cached prefix."""
        return self.pool.num_cached_free

    def get_computed_blocks(self, request: Request) -> PrefixHit:
        """The longest cached prefix of a request with nothing computed yet, in whole blocks,
        leaving at least its last token to compute."""
        ids = request.token_ids
        if ids is None or request.computed:
            return NO_HIT
        bs = self.block_size
        limit = (request.num_tokens - 1) // bs
        hashes = request.hashes
        extend_hashes(hashes, ids, bs, limit * bs)
        pool = self.pool
        blocks = []
        for key in hashes[:limit]:
            block = pool.lookup(key)
            if block is None:
                break
            blocks.append(block)
        device = len(blocks) * bs
        tier = self.tier
        if tier is None:
            return PrefixHit(tuple(blocks), device) if blocks else NO_HIT
        chunk = self.chunk_blocks
        keys = chunk_keys(hashes[:limit], chunk)
        lower = tier.match(keys) * chunk * bs
        extra = max(lower - device, 0)
        if not blocks and not extra:
            return NO_HIT
        return PrefixHit(tuple(blocks), device, extra,
                         extra * self.bytes_per_token // self.npu_num)

    def allocate_slots(self, request: Request, total_tokens: int, hit: PrefixHit = NO_HIT) -> bool:
        """Grow `request` to `total_tokens` tokens, first sharing `hit`'s blocks; False (and no
        change) if the free blocks do not suffice."""
        pool = self.pool
        owned = request.block_ids
        if hit.tokens:
            shared = hit.blocks
            needed = self.blocks_for(total_tokens) - len(shared)
            if needed > pool.num_free - sum(1 for b in shared if not pool.refs(b)):
                return False
            for block in shared:
                pool.touch(block)
            owned.extend(shared)
            request.computed = hit.tokens
        else:
            needed = self.blocks_for(total_tokens) - len(owned)
            if needed <= 0:
                return True
            if needed > pool.num_free:
                return False
        for _ in range(needed):
            owned.append(pool.take())
        request.blocks = len(owned)
        if request.token_ids is not None:
            self._publish(request, total_tokens)
        return True

    def _publish(self, request: Request, tokens: int) -> None:
        """Cache the full blocks of the first `tokens` tokens; write whole chunks through."""
        bs = self.block_size
        full = min(tokens, len(request.token_ids)) // bs
        done = request.published
        if full <= done:
            return
        hashes = request.hashes
        extend_hashes(hashes, request.token_ids, bs, full * bs)
        owned, pool = request.block_ids, self.pool
        for index in range(done, full):
            pool.cache(owned[index], hashes[index])
        request.published = full
        tier = self.tier
        if tier is not None:
            chunk = self.chunk_blocks
            nbytes = chunk * bs * self.bytes_per_token
            for end in range((done // chunk + 1) * chunk, full + 1, chunk):
                tier.insert(hashes[end - 1], nbytes)

    def free(self, request: Request) -> None:
        """Drop `request`'s references; its published blocks stay cached until reused."""
        self.pool.release(request.block_ids)
        request.block_ids = []
        request.blocks = 0
        request.published = 0

    def check(self, held: int) -> str | None:
        """Reference counts non-negative, free blocks unreferenced, held blocks referenced."""
        problem = self.pool.check(held)
        if problem is not None:
            return problem
        tier = self.tier
        if tier is not None and tier.used_bytes > tier.capacity_bytes:
            return f"{tier.name} prefix tier holds {tier.used_bytes} bytes over its capacity"
        return None
