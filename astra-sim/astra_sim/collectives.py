"""Closed-form collective and point-to-point times (engine.md §4, §6).

Valid when every participant issues the collective at the same tick (lockstep); the engine
falls back to step-level replay otherwise. Integer truncation happens per message and per
reduction, as in ASTRA-Sim, so the golden values are reproduced exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

from astra_sim.system import SystemConfig
from astra_sim.topology import Dimension, coordinates, total_npus

KINDS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all")


def _red(nbytes: int, system: SystemConfig) -> int:
    """Local reduction of a received message: one write and two reads at local-mem-bw."""
    return 3 * math.floor(nbytes / system.local_mem_bw)


def _neighbour_ns(dim: Dimension, nbytes: int, hops: int, aware: bool) -> int:
    """One message between two NPUs of a dimension."""
    if aware:
        if dim.topology == "Switch":
            return 2 * dim.link_ns(nbytes)  # NPU -> switch -> NPU, store and forward
        return hops * dim.link_ns(nbytes)
    return dim.net_ns(nbytes, hops)


def _direct_ns(dim: Dimension, nbytes: int, aware: bool) -> int:
    """One Direct step: every NPU sends `nbytes` to each of its p - 1 peers at once."""
    p = dim.npus
    if aware and dim.topology == "Switch":
        # The single uplink serialises the p - 1 messages; downlinks never queue.
        per_link = math.floor(nbytes / dim.bytes_per_ns)
        return (p - 2) * per_link + 2 * dim.link_ns(nbytes)
    if aware and dim.topology == "Ring":
        raise ValueError("Direct on a congestion-aware Ring shares links between peers; "
                         "use the congestion-unaware model or the ring algorithm")
    return max(dim.net_ns(nbytes, dim.hops(d)) for d in range(1, p))


def _ring_phase(op: str, dim: Dimension, size: int, ep: int, system: SystemConfig,
                aware: bool) -> int:
    p = dim.npus
    step = _neighbour_ns(dim, size // p, dim.hops(1), aware) + ep
    if op == "all_reduce":
        return 2 * (p - 1) * step + (p - 1) * _red(size // p, system) + ep
    if op == "reduce_scatter":
        return (p - 1) * step + (p - 1) * _red(size // p, system) + ep
    if op == "all_gather":
        return (p - 1) * (_neighbour_ns(dim, size, dim.hops(1), aware) + ep) + ep
    return p * (p - 1) // 2 * step + ep


def _direct_phase(op: str, dim: Dimension, size: int, ep: int, system: SystemConfig,
                  aware: bool) -> int:
    p = dim.npus
    if op == "all_gather":
        return ep + _direct_ns(dim, size, aware) + ep
    a2a = ep + _direct_ns(dim, size // p, aware) + ep
    if op == "all_to_all":
        return a2a
    rs = a2a + _red(size // p, system)
    if op == "reduce_scatter":
        return rs
    return rs + _direct_ns(dim, size // p, aware) + ep


def _hd_phase(op: str, dim: Dimension, size: int, ep: int, system: SystemConfig,
              aware: bool) -> int:
    p = dim.npus
    steps = p.bit_length() - 1
    if p & (p - 1):
        raise ValueError(f"halvingDoubling needs a power-of-two NPU count, got {p}")
    if op == "all_to_all":
        raise ValueError("halvingDoubling does not implement all-to-all")
    if aware and dim.topology == "Ring":
        raise ValueError("halvingDoubling on a congestion-aware Ring shares links; use the "
                         "congestion-unaware model or the ring algorithm")

    def msg(nbytes: int, distance: int) -> int:
        return _neighbour_ns(dim, nbytes, dim.hops(distance), aware) + ep

    if op == "all_gather":
        return sum(msg(size << k, 1 << k) for k in range(steps)) + ep
    halves = sum(msg(size >> k, p >> k) for k in range(1, steps + 1))
    rs = halves + ep + sum(_red(size >> k, system) for k in range(2, steps + 1))
    return rs if op == "reduce_scatter" else rs + halves


_PHASES = {"ring": _ring_phase, "direct": _direct_phase, "halvingDoubling": _hd_phase}


def _phases(kind: str, size: int, dims: list[tuple[Dimension, str]],
            optimization: str) -> list[tuple[Dimension, str, str, int]]:
    """(dimension, algorithm, phase op, phase size) in execution order (engine.md §4.2)."""
    if kind == "all_reduce" and optimization == "baseline":
        return [(d, a, "all_reduce", size) for d, a in dims]
    if kind == "all_reduce":
        phases, data, levels = [], size, [size]
        for d, a in dims[:-1]:
            phases.append((d, a, "reduce_scatter", data))
            data //= d.npus
            levels.append(data)
        phases.append((*dims[-1], "all_reduce", data))
        for j in range(len(dims) - 2, -1, -1):
            phases.append((*dims[j], "all_gather", levels[j + 1]))
        return phases
    if kind == "reduce_scatter":
        phases, data = [], size
        for d, a in dims:
            phases.append((d, a, kind, data))
            data //= d.npus
        return phases
    if kind == "all_gather":
        phases, data = [], size
        for d, a in reversed(dims):
            phases.append((d, a, kind, data))
            data *= d.npus
        return phases
    return [(d, a, kind, size) for d, a in dims]


@lru_cache(maxsize=65536)
def _collective(kind: str, size: int, dims: tuple[Dimension, ...], system: SystemConfig,
                involved: tuple[bool, ...] | None, aware: bool) -> int:
    algorithms = system.algorithms(kind)
    # An implementation list shorter than the network limits the dimensions used.
    usable = [(d, algorithms[i]) for i, d in enumerate(dims[:len(algorithms)])
              if d.npus > 1 and (involved is None or (i < len(involved) and involved[i]))]
    if not usable:
        return 0
    if aware and len(dims) > 1:
        raise ValueError("the congestion-aware model accepts only 1-D topologies")
    splits = system.preferred_dataset_splits
    chunk = size // splits
    nodes = total_npus(dims)
    if chunk < nodes and kind != "all_gather":
        chunk = nodes  # tiny collectives are rounded up to one byte per NPU of the system
    one_chunk = 0
    for dim, algorithm, op, phase_size in _phases(kind, chunk, usable,
                                                  system.collective_optimization):
        phase = _PHASES.get(algorithm)
        if phase is None:
            raise ValueError(f"{algorithm} has no closed form; the event-driven replay "
                             "times it")
        one_chunk += phase(op, dim, phase_size, system.endpoint_delay, system, aware)
    return -(-splits // system.active_chunks_per_dimension) * one_chunk


def collective_ns(kind: str, size: int, dims: Sequence[Dimension], system: SystemConfig,
                  involved: Sequence[bool] | None = None, aware: bool = False) -> int:
    """Lockstep time (ns) of one collective of `size` bytes (`comm_size` semantics, §4.1)."""
    if kind not in KINDS:
        raise ValueError(f"unknown collective {kind!r}; use one of {', '.join(KINDS)}")
    if size < 0:
        raise ValueError(f"collective size must be >= 0, got {size}")
    return _collective(kind, size, tuple(dims), system,
                       None if involved is None else tuple(involved), aware)


@lru_cache(maxsize=65536)
def _send(size: int, dims: tuple[Dimension, ...], src: int, dst: int, aware: bool) -> int:
    a, b = coordinates(src, dims), coordinates(dst, dims)
    for dim, x, y in zip(dims, a, b, strict=True):
        if x != y:
            return _neighbour_ns(dim, size, dim.hops(y - x), aware)
    return 0


def send_ns(size: int, dims: Sequence[Dimension], src: int, dst: int,
            aware: bool = False) -> int:
    """Point-to-point message time: routed in the lowest dimension whose coordinates differ."""
    n = total_npus(dims)
    if not (0 <= src < n and 0 <= dst < n):
        raise ValueError(f"NPU ids {src} -> {dst} outside 0..{n - 1}")
    return _send(size, tuple(dims), src, dst, aware)
