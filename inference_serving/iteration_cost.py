"""What a pricer returns for one iteration: its duration and where the time and bytes went."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class DeviceBusy:
    """Busy time of one NPU during an iteration, split by kind (ns; they may overlap)."""

    compute_ns: int = 0
    comm_ns: int = 0
    memory_ns: int = 0


@dataclass(slots=True)
class Usage:
    """Per-device busy time and bytes moved per link and per memory tier of one iteration.

    Link names: `"tp:<instance>"` (TP collectives), `"pd:<instance>"` (P/D sends of a prefill
    instance), `"pp:<instance>"` (stage to stage); tier names: `"host:<node>"`, and with
    attention offloading `"pim:<node>"`: the bytes the PIM ops move over the node's PIM
    channels. `pim_busy_ns[node]` is the busy time of the node's PIM channels summed over its
    channels (channel-ns: each op's PIM compute plus its channel access), so PIM active energy
    is (peak − idle channel power) × pim_busy_ns.
    `ring_bytes` is what the links carry by the ring algorithm (all-reduce 2(N−1)S/N,
    all-to-all (N−1)S/N, a send its size once); `staging_bytes` is the part of `tier_bytes`
    that stages token ids in and out (not DRAM traffic the power model charges, §11);
    `overhead_ns` is the part of each device's compute time that is a fitted calibration
    overhead rather than NPU work (not charged as NPU or CPU energy).
    """

    devices: dict[int, DeviceBusy] = field(default_factory=dict)
    link_bytes: dict[str, int] = field(default_factory=dict)
    tier_bytes: dict[str, int] = field(default_factory=dict)
    pim_busy_ns: dict[int, int] = field(default_factory=dict)
    ring_bytes: dict[str, float] = field(default_factory=dict)
    staging_bytes: int = 0
    overhead_ns: int = 0


@dataclass(slots=True)
class IterationCost:
    """Duration of one iteration (or pipeline stage) plus its per-device and per-resource use.

    `forward_ns` is the time the stage's activations take to reach the next pipeline stage
    after `duration_ns`. The usage is worked out from the plan the first time it is read (the
    power model and the timeline read it; a run without them never pays for it).
    """

    duration_ns: int
    forward_ns: int = 0
    account: Callable[[], Usage] | None = field(default=None, repr=False, compare=False)
    _usage: Usage | None = field(default=None, repr=False, compare=False)

    def usage(self) -> Usage:
        """The iteration's usage (computed once)."""
        if self._usage is None:
            self._usage = self.account() if self.account is not None else Usage()
        return self._usage

    @property
    def devices(self) -> dict[int, DeviceBusy]:
        """Busy time per global NPU id."""
        return self.usage().devices

    @property
    def link_bytes(self) -> dict[str, int]:
        """Bytes per link."""
        return self.usage().link_bytes

    @property
    def tier_bytes(self) -> dict[str, int]:
        """Bytes per memory tier."""
        return self.usage().tier_bytes
