"""A second-tier prefix store (CPU or CXL memory): whole chunks of a request's prefix keyed on
the same hash chain as the device blocks, kept least-recently-used within a byte capacity.

One store per instance, or shared: one per node (CPU) or one for the cluster (CXL). Writes are
write-through and free; a hit beyond the device hit is recalled on the store's memory FIFO.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(slots=True)
class PrefixTier:
    """One store: `name` for the reports (CPU/CXL), `target` the plan memory tier its recalls
    load from, `index` the node (CPU) or pool (CXL) it lives on, `page_tokens` tokens per
    entry."""

    name: str
    target: str
    index: int
    capacity_bytes: int
    page_tokens: int
    shared: bool = False
    entries: OrderedDict[int, int] = field(default_factory=OrderedDict)  # key -> bytes
    used_bytes: int = 0
    requested: int = 0  # prompt tokens looked up here (shared pools report their own ratio)
    hits: int = 0  # tokens hit here beyond the device hit
    recalled_bytes: int = 0  # per-NPU bytes loaded back to devices, summed over recalls

    def match(self, keys: Sequence[int]) -> int:
        """How many leading `keys` the store holds; those become most recently used."""
        entries = self.entries
        count = 0
        for key in keys:
            if key not in entries:
                break
            entries.move_to_end(key)
            count += 1
        return count

    def insert(self, key: int, nbytes: int) -> None:
        """Store one entry (write-through), evicting least recently used ones to make room; an
        entry larger than the whole store is not kept."""
        entries = self.entries
        if key in entries:
            entries.move_to_end(key)
            return
        if nbytes > self.capacity_bytes:
            return
        while self.used_bytes + nbytes > self.capacity_bytes:
            _, freed = entries.popitem(last=False)
            self.used_bytes -= freed
        entries[key] = nbytes
        self.used_bytes += nbytes

    @property
    def hit_ratio(self) -> float:
        """Hits / requested tokens, in %."""
        return self.hits / self.requested * 100 if self.requested else 0.0
