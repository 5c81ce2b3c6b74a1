"""Network dimensions, NPU coordinates and the congestion-unaware message time (engine.md §5)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral

TOPOLOGIES = ("Ring", "FullyConnected", "Switch")


@dataclass(frozen=True, slots=True)
class Dimension:
    """One network dimension: topology, NPU count, bandwidth ("GB/s", GiB-based), latency (ns)."""

    topology: str
    npus: int
    bandwidth_gbps: float
    latency_ns: float

    def __post_init__(self) -> None:
        if self.topology not in TOPOLOGIES:
            raise ValueError(f"unknown topology {self.topology!r}; use one of "
                             f"{', '.join(TOPOLOGIES)} (case-sensitive)")
        if isinstance(self.npus, bool) or not isinstance(self.npus, Integral) or self.npus < 1:
            raise ValueError(f"npus_count must be an integer >= 1, got {self.npus!r}")
        # `not x > 0` also rejects NaN.
        if not self.bandwidth_gbps > 0 or math.isinf(self.bandwidth_gbps):
            raise ValueError(f"bandwidth must be a finite number > 0 GB/s, got "
                             f"{self.bandwidth_gbps!r}")
        if not self.latency_ns >= 0 or math.isinf(self.latency_ns):
            raise ValueError(f"latency must be a finite number >= 0 ns, got {self.latency_ns!r}")

    @property
    def bytes_per_ns(self) -> float:
        """Bandwidth in bytes/ns; ASTRA-Sim converts network "GB/s" with 2^30, not 10^9."""
        return self.bandwidth_gbps * (1 << 30) / 1e9

    def hops(self, src_coord: int, dst_coord: int = 0) -> int:
        """Hops between two coordinates of this dimension (called with one argument: a distance)."""
        if self.topology == "Switch":
            return 2
        if self.topology == "FullyConnected":
            return 1
        d = (dst_coord - src_coord) % self.npus
        return min(d, self.npus - d)  # bidirectional ring: the shorter way round

    def net_ns(self, nbytes: int, hops: int) -> int:
        """Unaware message time floor(hops × latency + bytes / B), truncated once."""
        return math.floor(hops * self.latency_ns + nbytes / self.bytes_per_ns)

    def busy_ns(self, nbytes: int) -> int:
        """How long one aware link is occupied by a message: floor(bytes / B)."""
        return math.floor(nbytes / self.bytes_per_ns)

    def link_ns(self, nbytes: int) -> int:
        """One aware store-and-forward link traversal: floor(latency + bytes / B)."""
        return math.floor(self.latency_ns + nbytes / self.bytes_per_ns)


def coordinates(npu: int, dims: Sequence[Dimension]) -> tuple[int, ...]:
    """Coordinates of an NPU id; dimension 0 varies fastest (engine.md §5.2)."""
    coords = []
    for dim in dims:
        npu, x = divmod(npu, dim.npus)
        coords.append(x)
    return tuple(coords)


def npu_id(coords: Sequence[int], dims: Sequence[Dimension]) -> int:
    """NPU id of a coordinate tuple: x0 + n0·x1 + n0·n1·x2 + …"""
    npu, stride = 0, 1
    for x, dim in zip(coords, dims, strict=True):
        if not 0 <= x < dim.npus:
            raise ValueError(f"coordinate {x} outside 0..{dim.npus - 1}")
        npu += x * stride
        stride *= dim.npus
    return npu


def total_npus(dims: Sequence[Dimension]) -> int:
    """NPUs in the whole system."""
    return math.prod(d.npus for d in dims)
