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
    SEND,
    IterationPlan,
    PlanOp,
)


class PimChannels:
    """Busy-until time of every PIM channel of every node."""

    def __init__(self) -> None:
        self.free: dict[int, np.ndarray] = {}
        self.latest: dict[int, int] = {}  # per node: when its last booked op ends

    def launch(self, node: int, count: int, channels: np.ndarray, busy: np.ndarray,
               longest: int, now: int) -> int:
        """Book one group issued at `now` on `node`'s `count` channels (its used `channels`,
        each `busy` for its ops, `longest` the most); return when the group ends."""
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


def _steps(ops: tuple[PlanOp, ...], fabric: InstanceFabric) -> list[tuple]:
    """A group's operators with each PIM group's per-channel busy time worked out once and
    consecutive compute summed (nothing can happen between them)."""
    steps: list[tuple] = []
    for op in ops:
        if op.kind == COMPUTE and steps and steps[-1][0] == COMPUTE:
            steps[-1] = (COMPUTE, steps[-1][1] + op.ns)
        elif op.kind == PIM:
            work = op.pim
            busy = work.used_ns + work.used_ops * fabric.memory_ns(HOST, work.nbytes)
            steps.append((PIM, op.sub, work.used, busy, int(busy.max())))
        elif op.kind == COLLECTIVE:
            steps.append((COLLECTIVE, fabric.collective_ns(op.target, op.nbytes)))
        elif op.kind == SEND:
            steps.append((SEND, fabric.send_ns(op.target, op.nbytes)))
        else:
            steps.append((op.kind, op.sub if op.kind == PIM_WAIT else op.ns))
    return steps


def offloaded_chain(plan: IterationPlan, fabric: InstanceFabric, pim: PimChannels,
                    released: int) -> tuple[int, int]:
    """(end of the chain, end of its last message), absolute, for a chain released at
    `released`."""
    t = comm_free = released
    done: dict[int, int] = {}
    node, count = plan.node, fabric.pim_channels
    for group in plan.groups:
        steps = _steps(group.ops, fabric)
        for _ in range(group.count):
            for step in steps:
                kind = step[0]
                if kind == COMPUTE:
                    t += step[1]
                elif kind == PIM:
                    done[step[1]] = pim.launch(node, count, step[2], step[3], step[4], t)
                elif kind == PIM_WAIT:
                    t = max(t, done.get(step[1], t))
                elif kind == COLLECTIVE:
                    t = max(t, comm_free) + step[1]
                    comm_free = t
                else:
                    comm_free = max(t, comm_free) + step[1]
    return t, comm_free
