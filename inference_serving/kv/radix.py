"""The existing simulator's prefix-cache accounting (serving.md §8.1), for `--scheduler legacy`
and `--compat artifact`, minus its listed defects.

All KV of the instance lives in a tree of pages (one page = one block of token ids, keyed by
the chained hash, so a path from the root is a prefix): a request in a batch inserts its
sequence up to its current length, page-aligned, and locks that path; a finished request
inserts its whole sequence but the last token and unlocks it. Device memory in use is the
tree's pages plus the page each running request is filling, so cached tokens of finished
requests stay counted until they are evicted (unlocked leaves, least recently used first, when
a batch needs room) — the published memory curves never decrease. The second tier is written
through with the same pages; a hit there beyond the device hit is recalled (timed). As in the
existing simulator, a hit is not prior KV for the prefill's attention (`hits_are_prior_kv`).
"""

from __future__ import annotations

import heapq
from typing import ClassVar

from inference_serving.kv.hashing import ROOT, chunk_keys, extend_hashes
from inference_serving.kv.manager import NO_HIT, KVCacheManager, PrefixHit
from inference_serving.kv.swap import SwapSpace
from inference_serving.kv.tier import PrefixTier
from inference_serving.request import Request


class _Page:
    """One cached page: its parent's key, how many children and locks it has, its last use."""

    __slots__ = ("parent", "children", "locks", "used")

    def __init__(self, parent: int, used: int) -> None:
        self.parent = parent
        self.children = 0
        self.locks = 0
        self.used = used


class RadixPrefixManager(KVCacheManager):
    """Page-tree prefix accounting; `request.published` counts the pages a request locks."""

    scheme: ClassVar[str] = "page tree (existing simulator)"
    hits_are_prior_kv: ClassVar[bool] = False
    prefix_caching: ClassVar[bool] = True

    def __init__(self, num_blocks: int, block_size: int, bytes_per_token: int,
                 swap: SwapSpace | None = None, block_bytes: int = 0, npu_num: int = 1,
                 tier: PrefixTier | None = None) -> None:
        self._setup(num_blocks, block_size, swap, block_bytes, npu_num, tier)
        self.bytes_per_token = bytes_per_token
        self.pages: dict[int, _Page] = {}
        self.active = 0  # requests holding a partial page
        self.clock = 0  # LRU counter (advances with every use, in simulated-time order)
        self.tier_page_blocks = max(tier.page_tokens // block_size, 1) if tier else 1

    @property
    def used_blocks(self) -> int:  # type: ignore[override]
        """Cached pages plus one partial page per running request."""
        return len(self.pages) + self.active

    @property
    def free_blocks(self) -> int:  # type: ignore[override]
        """Blocks neither cached nor being filled."""
        return self.num_blocks - self.used_blocks

    @property
    def cached_blocks(self) -> int:
        """Cached pages no running request locks (evictable)."""
        return sum(1 for page in self.pages.values() if not page.locks)

    def available_blocks(self) -> int:
        """Free blocks plus evictable cached pages."""
        return self.free_blocks + self.cached_blocks

    def get_computed_blocks(self, request: Request) -> PrefixHit:
        """Device hit: the cached page-aligned prefix; second-tier hit beyond it; at least the
        last prompt token is computed."""
        ids = request.token_ids
        if ids is None or request.computed:
            return NO_HIT
        bs = self.block_size
        limit = (request.num_tokens - 1) // bs
        hashes = request.hashes
        extend_hashes(hashes, ids, bs, limit * bs)
        pages = self.pages
        device = 0
        for key in hashes[:limit]:
            if key not in pages:
                break
            device += 1
        extra = 0
        if self.tier is not None:
            step = self.tier_page_blocks
            lower = self.tier.match(chunk_keys(hashes[:limit], step)) * step
            extra = max(lower - device, 0) * bs
        if not device and not extra:
            return NO_HIT
        return PrefixHit((), device * bs, extra, extra * self.bytes_per_token // self.npu_num)

    def allocate_slots(self, request: Request, total_tokens: int, hit: PrefixHit = NO_HIT) -> bool:
        """Insert the request's sequence up to its current length (page-aligned) and lock it,
        evicting unlocked pages when the tree is full; False if it cannot fit."""
        if hit.tokens:
            request.computed = hit.tokens
        pages = min(total_tokens, request.num_tokens) // self.block_size
        new = not request.blocks
        if request.token_ids is None:
            pages = 0
        hashes = request.hashes
        if pages > len(hashes):
            extend_hashes(hashes, request.token_ids, self.block_size, pages * self.block_size)
            pages = min(pages, len(hashes))
        if not self._make_room(hashes[request.published:pages], 1 if new else 0):
            return False
        self._insert(request, pages, lock=True)
        if new:
            self.active += 1
        request.blocks = request.published + 1
        return True

    def _insert(self, request: Request, pages: int, lock: bool) -> None:
        """Add `request`'s first `pages` pages to the tree (locking the new part of its path);
        write them through to the second tier."""
        tree = self.pages
        hashes = request.hashes
        start = request.published
        for index in range(start, pages):
            self.clock += 1
            key = hashes[index]
            page = tree.get(key)
            if page is None:
                parent = hashes[index - 1] if index else ROOT
                page = tree[key] = _Page(parent, self.clock)
                if parent in tree:
                    tree[parent].children += 1
            page.used = self.clock
            if lock:
                page.locks += 1
        if lock and pages > start:
            request.published = pages
        tier = self.tier
        if tier is not None:
            step = self.tier_page_blocks
            nbytes = step * self.block_size * self.bytes_per_token
            for end in range((start // step + 1) * step, pages + 1, step):
                tier.insert(hashes[end - 1], nbytes)

    def _make_room(self, keys: list[int], partial: int) -> bool:
        """Room for the pages of `keys` not yet cached plus `partial` pages being filled,
        evicting other unlocked pages; the cached pages of `keys` are kept, since the insert
        that follows counts on them. False (nothing evicted) if there is no such room."""
        tree = self.pages
        kept = [tree[key] for key in keys if key in tree]
        needed = len(keys) - len(kept) + partial
        if needed <= self.free_blocks:
            return True
        for page in kept:
            page.locks += 1
        try:
            return self._evict(needed - self.free_blocks)
        finally:
            for page in kept:
                page.locks -= 1

    def _evict(self, count: int) -> bool:
        """Evict `count` unlocked pages, leaves first, least recently used first; False (and
        nothing evicted) if fewer are evictable."""
        tree = self.pages
        if sum(1 for page in tree.values() if not page.locks) < count:
            return False
        heap = [(page.used, key) for key, page in tree.items()
                if not page.locks and not page.children]
        heapq.heapify(heap)
        while count and heap:
            _, key = heapq.heappop(heap)
            page = tree.pop(key)
            count -= 1
            parent = tree.get(page.parent)
            if parent is not None:
                parent.children -= 1
                if not parent.children and not parent.locks:
                    heapq.heappush(heap, (parent.used, page.parent))
        return True

    def _unlock(self, request: Request) -> None:
        tree = self.pages
        for key in request.hashes[:request.published]:
            page = tree.get(key)
            if page is not None:
                page.locks -= 1
        request.published = 0
        if request.blocks:
            self.active -= 1
        request.blocks = 0

    def free(self, request: Request) -> None:
        """Preemption or hand-off: unlock the request's pages (they stay cached)."""
        self._unlock(request)

    def finish(self, request: Request) -> None:
        """Insert the whole sequence but the last token, page-aligned, then unlock."""
        if request.token_ids is not None:
            pages = (request.num_tokens - 1) // self.block_size
            extend_hashes(request.hashes, request.token_ids, self.block_size,
                          pages * self.block_size)
            pages = min(pages, len(request.hashes))
            if self._make_room(request.hashes[:pages], 0):
                self._insert(request, pages, lock=False)
        self._unlock(request)

    def check(self, held: int) -> str | None:
        """Locks non-negative, pages within capacity, the tier within its capacity."""
        if any(page.locks < 0 for page in self.pages.values()):
            return "a page lock count is negative"
        if self.used_blocks > self.num_blocks:
            return f"{self.used_blocks} pages in use exceed {self.num_blocks}"
        tier = self.tier
        if tier is not None and tier.used_bytes > tier.capacity_bytes:
            return f"{tier.name} prefix tier holds {tier.used_bytes} bytes over its capacity"
        return None
