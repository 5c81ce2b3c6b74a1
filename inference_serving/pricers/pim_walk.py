"""Exact timing of an offloaded plan's chain (serving.md §10) without building its graphs.

The NPU runs the chain's compute in order; a `pim` op launches its group on the node's PIM
channels and the chain goes on; a `pim_wait` holds the chain until the last group of its
sub-batch has finished. Each (node, channel) is one FIFO: an op on it takes its PIM compute
plus one host-memory access of its bytes (latency + bytes / bandwidth, the PIM-derived host
memory). The ops of one group that share a channel are issued together and served back to
back, so a group needs one vector step over its channels: channel c finishes at
max(launch, c busy until) + its ops' time, and the group at the latest of those.

This is the event-driven replay of the plan's graphs (`chakra_graph.plan_graphs`: PIM nodes
on their (device, channel) FIFOs, `o_proj` depending on them) computed per group instead of per
node; the tests check both give the same times. The channels of a node are one state shared by
its instances, booked in pricing order (exact for one offloading instance per node).
"""

from __future__ import annotations

import numpy as np

from inference_serving.fabric import InstanceFabric
from llmsim_core.iteration_plan import (
    COLLECTIVE,
    COMPUTE,
    HOST,
    PIM,
    PIM_WAIT,
    IterationPlan,
    PimWork,
)

WORK_CACHE = 64  # groups whose channel vectors are kept (a plan launches the same few)


class PimChannels:
    """Busy-until time of every PIM channel of every node."""

    def __init__(self) -> None:
        self.free: dict[int, np.ndarray] = {}
        self.latest: dict[int, int] = {}  # per node: when its last booked op ends
        self._vectors: dict[int, tuple[PimWork, np.ndarray, np.ndarray, int]] = {}

    def group_vectors(self, work: PimWork, overhead: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Used channels, each one's busy time for the group, and the longest."""
        cached = self._vectors.get(id(work))
        if cached is None or cached[0] is not work:
            channels = np.fromiter((c for c, _, _ in work.channel_ns), np.intp,
                                   len(work.channel_ns))
            busy = np.fromiter((ns + n * overhead for _, ns, n in work.channel_ns), np.int64,
                               len(work.channel_ns))
            if len(self._vectors) >= WORK_CACHE:
                self._vectors.clear()
            cached = self._vectors[id(work)] = (work, channels, busy, int(busy.max()))
        return cached[1], cached[2], cached[3]

    def launch(self, node: int, count: int, work: PimWork, overhead: int, now: int) -> int:
        """Book one group issued at `now` on `node`'s `count` channels; return when it ends."""
        channels, busy, longest = self.group_vectors(work, overhead)
        free = self.free.get(node)
        if free is None:
            free = self.free[node] = np.zeros(count, dtype=np.int64)
            self.latest[node] = 0
        if self.latest[node] <= now:  # every channel idle: no queueing
            free[channels] = busy + now
            end = now + longest
        else:
            ends = np.maximum(free[channels], now)
            ends += busy
            free[channels] = ends
            end = int(ends.max())
        if end > self.latest[node]:
            self.latest[node] = end
        return end


def offloaded_chain(plan: IterationPlan, fabric: InstanceFabric, pim: PimChannels,
                    released: int) -> tuple[int, int]:
    """(end of the chain, end of its last message), absolute, for a chain released at
    `released`."""
    t = comm_free = released
    done: dict[int, int] = {}
    node, count = plan.node, fabric.pim_channels
    for group in plan.groups:
        ops = group.ops
        for _ in range(group.count):
            for op in ops:
                kind = op.kind
                if kind == COMPUTE:
                    t += op.ns
                elif kind == PIM:
                    overhead = fabric.memory_ns(HOST, op.pim.nbytes)
                    done[op.sub] = pim.launch(node, count, op.pim, overhead, t)
                elif kind == PIM_WAIT:
                    t = max(t, done.get(op.sub, t))
                elif kind == COLLECTIVE:
                    t = max(t, comm_free) + fabric.collective_ns(op.target, op.nbytes)
                    comm_free = t
                else:
                    comm_free = max(t, comm_free) + fabric.send_ns(op.target, op.nbytes)
    return t, comm_free
