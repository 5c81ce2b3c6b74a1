"""What a pricer returns for one iteration: its duration and where the time and bytes went."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class DeviceBusy:
    """Busy time of one NPU during an iteration, split by kind (ns; they may overlap)."""

    compute_ns: int = 0
    comm_ns: int = 0
    memory_ns: int = 0


@dataclass(slots=True)
class IterationCost:
    """Duration of one iteration (or pipeline stage) plus its per-device and per-resource use.

    `devices` maps global NPU ids to their busy time; `link_bytes` maps a link name
    (`"tp:<instance>"`, `"pd:<src node>-><dst node>"`, `"pp:<instance>"`) and `tier_bytes` a
    memory name (`"host:<node>"`) to the bytes moved; `forward_ns` is the time the stage's
    activations take to reach the next pipeline stage after `duration_ns`. The power model and
    the timeline read it.
    """

    duration_ns: int
    forward_ns: int = 0
    devices: dict[int, DeviceBusy] = field(default_factory=dict)
    link_bytes: dict[str, int] = field(default_factory=dict)
    tier_bytes: dict[str, int] = field(default_factory=dict)
