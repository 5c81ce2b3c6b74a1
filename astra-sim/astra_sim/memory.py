"""Memory layer (engine.md §7): local, remote CPU, CXL pool and PIM channels, with FIFO queues.

An access costs `latency + floor(bytes / bw)` ns (bandwidth in decimal GB/s = bytes/ns) and a
queued device is busy for that whole time. Local memory has no queue; each remote (per-node)
device, each CXL device and each (device, PIM channel) pair is its own FIFO, shared by every
NPU that addresses it.

The FIFOs keep a calendar of booked accesses, so several replays sharing them (instances of
one cluster, each iteration replayed from its start time) interact: an access never overtakes
one issued before it, and it takes the first idle gap at or after its issue time that fits
before accesses booked for later by replays that ran earlier. Within one replay, where
accesses are issued in time order, this is a plain FIFO.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

LOCAL, REMOTE, CXL = 1, 2, 3  # tensor_loc values (4, storage, is not modelled)
TIER_NAMES = {LOCAL: "local_mem", REMOTE: "remote_mem", CXL: "cxl_mem"}
UPSTREAM_TYPES = ("NO_MEMORY_EXPANSION", "PER_NODE_MEMORY_EXPANSION",
                  "PER_NPU_MEMORY_EXPANSION", "MEMORY_POOL")
# The keys of an upstream flat memory JSON and of one casys tier (engine.md §7.1, §7.2).
UPSTREAM_KEYS = frozenset(("memory-type", "remote-mem-latency", "remote-mem-bw", "num-nodes",
                           "num-npus-per-node"))
TIER_KEYS = frozenset(("memory-type", "mem-latency", "mem-bw", "num-devices", "pim-channels"))


def is_upstream(raw: dict) -> bool:
    """Whether a memory JSON object is the upstream flat layout (else casys nested tiers)."""
    return "memory-type" in raw and not any(k in raw for k in TIER_NAMES.values())


@dataclass(frozen=True, slots=True)
class Tier:
    """One memory tier: latency (ns), bandwidth (bytes/ns), devices, queueing discipline."""

    latency_ns: float
    bw_bytes_per_ns: float
    num_devices: int = 1
    queued: bool = True
    pim_channels: int = 0

    def access_ns(self, nbytes: int) -> int:
        """Service time of one access."""
        return int(self.latency_ns) + math.floor(nbytes / self.bw_bytes_per_ns)


@dataclass(slots=True)
class MemorySystem:
    """All tiers plus the busy-until time of every FIFO (kept across replays)."""

    tiers: dict[int, Tier] = field(default_factory=dict)
    npus_per_node: int = 0  # upstream PER_NODE: device = npu // npus_per_node
    pool: bool = False  # upstream MEMORY_POOL: one global FIFO
    # Per FIFO: booked (start, end, issue) triples sorted by start; shareable between systems.
    calendar: dict[tuple, list[tuple[int, int, int]]] = field(default_factory=dict)
    # When a list, every booking is also appended to it as (FIFO, start, end, issue).
    log: list | None = None

    def access(self, npu: int, now: int, nbytes: int, loc: int = REMOTE, device: int = 0,
               channel: int | None = None, extra_ns: int = 0, repeat: int = 1) -> int:
        """Completion time of an access issued at `now` (PIM: `channel` and its compute time);
        `repeat` accesses of the same size issued together are served back to back."""
        tier = self.tiers.get(loc)
        if tier is None:
            raise ValueError(f"memory node addresses tier {loc} but no "
                             f"{TIER_NAMES.get(loc, 'storage')} is configured")
        duration = (tier.access_ns(nbytes) + extra_ns) * repeat
        if not tier.queued:
            return now + duration
        if self.npus_per_node:
            device = npu // self.npus_per_node
        elif self.pool:
            device = 0
        if not 0 <= device < tier.num_devices:
            raise ValueError(f"memory device {device} outside 0..{tier.num_devices - 1}")
        key = (loc, device) if channel is None else (loc, device, "pim", channel)
        if channel is not None and not 0 <= channel < max(tier.pim_channels, 1):
            raise ValueError(f"PIM channel {channel} outside 0..{tier.pim_channels - 1}")
        return self.book(key, now, duration)

    def book(self, key: tuple, now: int, duration: int) -> int:
        """Book `duration` ns on FIFO `key` for an access issued at `now`; return its end."""
        slots = self.calendar.setdefault(key, [])
        start = now
        for _, slot_end, issue in slots:
            if issue <= now and slot_end > start:
                start = slot_end  # issued before this access: served first
        index = bisect.bisect_right(slots, (start, math.inf, math.inf))
        if index and slots[index - 1][1] > start:
            start = slots[index - 1][1]
        while index < len(slots) and start + duration > slots[index][0]:
            start = max(start, slots[index][1])
            index += 1
        end = start + duration
        slots.insert(index, (start, end, now))
        if self.log is not None:
            self.log.append((key, start, end, now))
        return end

    def forget_before(self, time: int) -> None:
        """Drop bookings that end by `time` (no later access is issued before it)."""
        # Bookings never overlap, so their ends ascend with their starts: the ended ones are
        # a prefix.
        for slots in self.calendar.values():
            if slots and slots[0][1] <= time:
                ended = 1
                while ended < len(slots) and slots[ended][1] <= time:
                    ended += 1
                del slots[:ended]

    @classmethod
    def from_json_dict(cls, raw: dict, num_npus: int) -> MemorySystem:
        """Parse an upstream flat memory JSON or a casys nested-tier JSON."""
        if not isinstance(raw, dict):
            raise ValueError("memory configuration must be a JSON object")
        if is_upstream(raw):
            return cls._upstream(raw, num_npus)
        tiers = {}
        for loc, key in TIER_NAMES.items():
            if key in raw:
                tiers[loc] = _casys_tier(raw[key], key, loc)
        if not tiers:
            raise ValueError("memory configuration has no local_mem, remote_mem or cxl_mem tier")
        return cls(tiers=tiers)

    @classmethod
    def _upstream(cls, raw: dict, num_npus: int) -> MemorySystem:
        kind = raw["memory-type"]
        if kind not in UPSTREAM_TYPES:
            raise ValueError(f"unknown memory-type {kind!r}; use one of "
                             f"{', '.join(UPSTREAM_TYPES)}")
        if kind == "NO_MEMORY_EXPANSION":
            return cls()
        latency = _number(raw, "remote-mem-latency")
        bw = _number(raw, "remote-mem-bw", positive=True)
        if kind == "PER_NPU_MEMORY_EXPANSION":
            return cls(tiers={REMOTE: Tier(latency, bw, num_npus, queued=False)})
        if kind == "MEMORY_POOL":
            return cls(tiers={REMOTE: Tier(latency, bw, 1)}, pool=True)
        per_node = int(_number(raw, "num-npus-per-node", positive=True))
        nodes = int(raw.get("num-nodes", -(-num_npus // per_node)))
        return cls(tiers={REMOTE: Tier(latency, bw, nodes)}, npus_per_node=per_node)


def _number(raw: dict, key: str, positive: bool = False) -> float:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or \
            (positive and value == 0):
        bound = "positive" if positive else "non-negative"
        raise ValueError(f"memory key {key!r} must be a {bound} number, got {value!r}")
    return float(value)


def _casys_tier(raw: dict, key: str, loc: int) -> Tier:
    if not isinstance(raw, dict):
        raise ValueError(f"{key} must be a JSON object")
    # The binary reads the type; a misspelt one must not pass unseen.
    if "memory-type" in raw and raw["memory-type"] not in UPSTREAM_TYPES:
        raise ValueError(f"unknown memory-type {raw['memory-type']!r} in {key}; use one of "
                         f"{', '.join(UPSTREAM_TYPES)}")
    return Tier(latency_ns=_number(raw, "mem-latency"),
                bw_bytes_per_ns=_number(raw, "mem-bw", positive=True),
                num_devices=int(raw.get("num-devices", 1)),
                queued=loc != LOCAL,
                pim_channels=int(raw.get("pim-channels", 0)))
