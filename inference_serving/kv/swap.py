"""Where preempted KV is parked: the node's CPU memory or a CXL pool, with its byte count."""

from __future__ import annotations

from dataclasses import dataclass

from llmsim_core.iteration_plan import HOST


@dataclass(slots=True)
class SwapSpace:
    """Swap space of one instance on memory tier `target` (`host`, or `cxl` device `device`).

    `used_bytes` counts whole-instance bytes (per-NPU bytes × NPUs) against `capacity_bytes`;
    `out_bytes` / `in_bytes` sum the per-NPU bytes moved out and back in over the run.
    """

    capacity_bytes: int
    target: str = HOST
    device: int = 0
    used_bytes: int = 0
    out_bytes: int = 0
    in_bytes: int = 0
