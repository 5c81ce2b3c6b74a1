"""Network dimensions and the congestion-unaware message time (engine.md §5)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

TOPOLOGIES = ("Ring", "FullyConnected", "Switch")


@dataclass(frozen=True, slots=True)
class Dimension:
    """One network dimension: its topology, NPU count, bandwidth ("GB/s", GiB-based) and
    per-hop latency (ns)."""

    topology: str
    npus: int
    bandwidth_gbps: float
    latency_ns: float

    def __post_init__(self) -> None:
        if self.topology not in TOPOLOGIES:
            raise ValueError(f"unknown topology {self.topology!r}; use one of "
                             f"{', '.join(TOPOLOGIES)}")
        if self.npus < 1:
            raise ValueError(f"npus_count must be >= 1, got {self.npus}")
        if self.bandwidth_gbps <= 0:
            raise ValueError(f"bandwidth must be > 0, got {self.bandwidth_gbps}")
        if self.latency_ns < 0:
            raise ValueError(f"latency must be >= 0, got {self.latency_ns}")

    @property
    def bytes_per_ns(self) -> float:
        """Bandwidth in bytes/ns; ASTRA-Sim converts network GB/s with 2^30."""
        return self.bandwidth_gbps * (1 << 30) / 1e9

    def hops(self, distance: int) -> int:
        """Hops between two coordinates `distance` apart in this dimension."""
        if self.topology == "Switch":
            return 2
        if self.topology == "FullyConnected":
            return 1
        d = abs(distance) % self.npus
        return min(d, self.npus - d)

    def net_ns(self, nbytes: int, hops: int) -> int:
        """Unaware message time: floor(hops × latency + bytes / B), truncated once."""
        return math.floor(hops * self.latency_ns + nbytes / self.bytes_per_ns)

    def link_ns(self, nbytes: int) -> int:
        """One store-and-forward link traversal: floor(latency + bytes / B)."""
        return math.floor(self.latency_ns + nbytes / self.bytes_per_ns)


def coordinates(npu: int, dims: Sequence[Dimension]) -> tuple[int, ...]:
    """Coordinates of an NPU id; dimension 0 varies fastest (engine.md §5.2)."""
    coords = []
    for dim in dims:
        npu, x = divmod(npu, dim.npus)
        coords.append(x)
    return tuple(coords)


def npu_id(coords: Sequence[int], dims: Sequence[Dimension]) -> int:
    """NPU id of a coordinate tuple."""
    npu, stride = 0, 1
    for x, dim in zip(coords, dims, strict=True):
        npu += x * stride
        stride *= dim.npus
    return npu


def total_npus(dims: Sequence[Dimension]) -> int:
    """NPUs in the whole system."""
    return math.prod(d.npus for d in dims)
