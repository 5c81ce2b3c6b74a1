"""Closed-form collective and point-to-point times (engine.md §4, §5.4, §6).

Valid when every participant issues the collective at the same tick (lockstep); the engine
replays the algorithm's steps otherwise. Integer truncation happens per message and per
reduction, as in ASTRA-Sim, so the golden values of §6.4 are reproduced exactly.

Congestion-aware cases without a rule of their own in the spec (Direct and Halving-Doubling
on a Ring topology) are timed by a hop-by-hop link FIFO simulation of one step's messages
(links.py), as ASTRA-Sim's congestion-aware backend routes them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

from astra_sim.links import LinkSim
from astra_sim.system import SystemConfig
from astra_sim.topology import Dimension, coordinates, total_npus

KINDS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all")


def reduction_ns(nbytes: int, system: SystemConfig) -> int:
    """Local reduction of a received message: one write and two reads at local-mem-bw."""
    return 3 * math.floor(nbytes / system.local_mem_bw)


def _message_ns(dim: Dimension, nbytes: int, hops: int, aware: bool) -> int:
    """A message that shares no link with another one: unaware formula or store-and-forward."""
    if aware:
        return hops * dim.link_ns(nbytes)
    return dim.net_ns(nbytes, hops)


@lru_cache(maxsize=1024)
def _fifo_ns(dim: Dimension, nbytes: int, pairs: tuple[tuple[int, int], ...]) -> int:
    """Aware time of one step whose (src, dst) messages all leave at t = 0, in list order.

    The messages cross the links hop by hop (links.LinkSim); the step ends at the last
    delivery. In lockstep every participant of a Ring, FullyConnected or Switch step sees the
    same traffic, so all of them finish the step together.
    """
    sim = LinkSim(dim, {})
    for src, dst in pairs:
        sim.send(0, src, dst, nbytes, None)
    end = 0
    while (delivery := sim.next_delivery()) is not None:
        end = max(end, delivery[0])
    return end


def _direct_pairs(p: int) -> tuple[tuple[int, int], ...]:
    """Direct step messages: NPU by NPU, each to its peers in offset order (+1, +2, …)."""
    return tuple((src, (src + k) % p) for src in range(p) for k in range(1, p))


def _direct_ns(dim: Dimension, nbytes: int, aware: bool) -> int:
    """One Direct step: every NPU sends `nbytes` to each of its p − 1 peers at once."""
    p = dim.npus
    if not aware or dim.topology == "FullyConnected":
        # The farthest peer is p // 2 ring hops away; aware FullyConnected links are private.
        return _message_ns(dim, nbytes, dim.hops(p // 2), aware)
    if dim.topology == "Switch":
        # §5.4: the uplink serialises the p − 1 messages; downlinks never queue.
        return (p - 2) * dim.busy_ns(nbytes) + 2 * dim.link_ns(nbytes)
    return _fifo_ns(dim, nbytes, _direct_pairs(p))


def _exchange_ns(dim: Dimension, nbytes: int, distance: int, aware: bool) -> int:
    """One Halving-Doubling step: every NPU swaps `nbytes` with the NPU `distance` XOR away."""
    if aware and dim.topology == "Ring":
        p = dim.npus
        return _fifo_ns(dim, nbytes, tuple((src, src ^ distance) for src in range(p)))
    # Each NPU sends and receives exactly one message: no shared Switch or FC link.
    return _message_ns(dim, nbytes, dim.hops(distance), aware)


def _ring_phase(op: str, dim: Dimension, size: int, ep: int, system: SystemConfig,
                aware: bool) -> int:
    """Ring algorithm on one dimension; every message goes to the next coordinate."""
    p, m = dim.npus, size // dim.npus
    if op == "all_gather":
        return (p - 1) * (_message_ns(dim, size, dim.hops(1), aware) + ep) + ep
    # Neighbour messages never share a link, so aware only changes the per-message time.
    step = _message_ns(dim, m, dim.hops(1), aware) + ep
    if op == "all_to_all":
        return p * (p - 1) // 2 * step + ep
    reduce_scatter = (p - 1) * step + (p - 1) * reduction_ns(m, system) + ep
    return reduce_scatter if op == "reduce_scatter" else reduce_scatter + (p - 1) * step


def _direct_phase(op: str, dim: Dimension, size: int, ep: int, system: SystemConfig,
                  aware: bool) -> int:
    """Direct (and directN) algorithm on one dimension."""
    if op == "all_gather":
        return ep + _direct_ns(dim, size, aware) + ep
    m = size // dim.npus
    all_to_all = ep + _direct_ns(dim, m, aware) + ep
    if op == "all_to_all":
        return all_to_all
    reduce_scatter = all_to_all + reduction_ns(m, system)
    if op == "reduce_scatter":
        return reduce_scatter
    return reduce_scatter + _direct_ns(dim, m, aware) + ep


def _hd_phase(op: str, dim: Dimension, size: int, ep: int, system: SystemConfig,
              aware: bool) -> int:
    """Halving-Doubling algorithm on one dimension (power-of-two NPU count only)."""
    p = dim.npus
    if p & (p - 1):
        raise ValueError(f"halvingDoubling needs a power-of-two NPU count per dimension, "
                         f"got {p}")
    if op == "all_to_all":
        raise ValueError("halvingDoubling does not implement all-to-all (ASTRA-Sim aborts)")
    levels = p.bit_length() - 1
    # HalvingDoubling.cc pairs the largest message with the nearest partner (offset 1).
    if op == "all_gather":
        return sum(_exchange_ns(dim, size << k, p >> (k + 1), aware) + ep
                   for k in range(levels)) + ep
    halves = sum(_exchange_ns(dim, size >> k, 1 << (k - 1), aware) + ep
                 for k in range(1, levels + 1))
    reduce_scatter = halves + ep + sum(reduction_ns(size >> k, system)
                                       for k in range(2, levels + 1))
    return reduce_scatter if op == "reduce_scatter" else reduce_scatter + halves


_PHASES = {"ring": _ring_phase, "direct": _direct_phase, "halvingDoubling": _hd_phase}


def collective_phases(kind: str, size: int, dims: list[tuple[Dimension, str]],
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
    if kind not in KINDS:
        raise ValueError(f"unknown collective {kind!r}; use one of {', '.join(KINDS)}")
    if size < 0:
        raise ValueError(f"collective size must be >= 0 bytes, got {size}")
    if aware and len(dims) > 1:
        raise ValueError("the congestion-aware model accepts only 1-D topologies")
    algorithms = system.algorithms(kind)
    # An implementation list shorter than the network limits the dimensions used.
    usable = [(d, algorithms[i]) for i, d in enumerate(dims[:len(algorithms)])
              if d.npus > 1 and (involved is None or (i < len(involved) and involved[i]))]
    if not usable:
        return 0
    splits = system.preferred_dataset_splits
    chunk = size // splits
    nodes = total_npus(dims)
    if chunk < nodes and kind != "all_gather":
        chunk = nodes  # tiny collectives are rounded up to one byte per NPU of the system
    one_chunk = 0
    for dim, algorithm, op, phase_size in collective_phases(kind, chunk, usable,
                                                  system.collective_optimization):
        phase = _PHASES.get(algorithm)
        if phase is None:
            raise ValueError(f"{algorithm} has no closed form; the engine's step-level replay "
                             "times it")
        one_chunk += phase(op, dim, phase_size, system.endpoint_delay, system, aware)
    # Unaware chunks never contend, so `a` concurrent chunks take the time of one.
    return -(-splits // system.active_chunks_per_dimension) * one_chunk


def collective_ns(kind: str, size: int, dims: Sequence[Dimension], system: SystemConfig,
                  involved: Sequence[bool] | None = None, aware: bool = False) -> int:
    """Lockstep time (ns) of one collective of `size` bytes (`comm_size` semantics, §4.1)."""
    return _collective(kind, size, dims if type(dims) is tuple else tuple(dims), system,
                       None if involved is None else tuple(involved), aware)


@lru_cache(maxsize=65536)
def _send(size: int, dims: tuple[Dimension, ...], src: int, dst: int, aware: bool) -> int:
    n = total_npus(dims)
    if not (0 <= src < n and 0 <= dst < n):
        raise ValueError(f"NPU ids {src} -> {dst} outside 0..{n - 1}")
    if aware and len(dims) > 1:
        raise ValueError("the congestion-aware model accepts only 1-D topologies")
    for dim, x, y in zip(dims, coordinates(src, dims), coordinates(dst, dims), strict=True):
        if x != y:
            return _message_ns(dim, size, dim.hops(x, y), aware)
    return 0


def send_ns(size: int, dims: Sequence[Dimension], src: int, dst: int,
            aware: bool = False) -> int:
    """Point-to-point message time, routed in the lowest dimension whose coordinates differ."""
    return _send(size, dims if type(dims) is tuple else tuple(dims), src, dst, aware)
