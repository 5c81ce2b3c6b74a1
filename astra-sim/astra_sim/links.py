"""The congestion-aware link model: routes and hop-by-hop FIFO delivery (engine.md §5.4).

Each rule follows ASTRA-Sim's analytical congestion-aware network (repository
astra-network-analytical, `congestion_aware/`, driven by astra-sim's
`network_frontend/analytical/congestion_aware/CongestionAwareNetworkApi.cc`):

* `sim_send` turns every message into one chunk of the whole message size with its full
  route, computed once at injection (`Topology::route`); the chunk is never split.
* Ring (`Ring.cc`, built bidirectional from `network.yml`): one directed link per neighbour
  pair and direction; a chunk goes clockwise (increasing id) unless anticlockwise is strictly
  shorter, so a peer exactly p/2 away is reached clockwise. FullyConnected: one directed link
  per ordered NPU pair. Switch: NPU -> switch -> NPU over two links.
* `Link.cc`: a link is a FIFO. A chunk arriving at a busy link waits at the tail; a free link
  takes the head chunk, stays busy floor(bytes / B) ns (`serialization_delay`) and delivers
  the chunk to the next device floor(latency + bytes / B) ns after it started
  (`communication_delay`): store-and-forward per hop at whole-message granularity.
* `Chunk.cc`: on arrival at an intermediate device the chunk is handed to that device's next
  link at once; at its destination the callback fires.
* The event queue runs events in time order, simultaneous events in the order they were
  scheduled. Here a link's FIFO is served by computing each chunk's start as
  max(arrival, link free) when its arrival is processed, which gives the same service order
  and start times; only the order of exactly simultaneous arrivals further down the route
  can differ from ASTRA-Sim's.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from functools import lru_cache

from astra_sim.topology import Dimension

Link = tuple


@lru_cache(maxsize=65536)
def route(dim: Dimension, x: int, y: int) -> tuple[Link, ...]:
    """Directed links from coordinate `x` to `y` of one dimension, in crossing order."""
    if dim.topology == "FullyConnected":
        return (("fc", x, y),)
    if dim.topology == "Switch":
        return (("up", x), ("down", y))
    p = dim.npus
    step = 1 if (y - x) % p <= p // 2 else -1  # anticlockwise only when strictly shorter
    links, node = [], x
    while node != y:
        nxt = (node + step) % p
        links.append(("ring", node, nxt))
        node = nxt
    return tuple(links)


class LinkSim:
    """Messages crossing FIFO links hop by hop, processed in global time order."""

    def __init__(self, dim: Dimension, link_free: dict[Link, int]) -> None:
        self.dim = dim
        self.link_free = link_free  # busy-until per link; shared with earlier traffic
        self.heap: list[tuple] = []
        self.seq = 0

    def send(self, depart: int, x: int, y: int, nbytes: int, tag: Hashable) -> None:
        """Inject a message from coordinate `x` to `y` that reaches its first link at `depart`."""
        self.seq += 1
        heapq.heappush(self.heap, (depart, self.seq, 0, route(self.dim, x, y),
                                   self.dim.busy_ns(nbytes), self.dim.link_ns(nbytes), tag))

    def next_delivery(self) -> tuple[int, Hashable] | None:
        """(arrival time, tag) of the next message to reach its destination; None when idle.

        A message injected after a delivery must not depart before that delivery's arrival
        (events are processed in time order); collectives satisfy this because a participant
        sends its next message only after receiving.
        """
        heap, free = self.heap, self.link_free
        while heap:
            t, _, hop, links, busy, latency, tag = heapq.heappop(heap)
            link = links[hop]
            start = max(t, free.get(link, 0))
            free[link] = start + busy
            if hop + 1 == len(links):
                return start + latency, tag
            self.seq += 1
            heapq.heappush(heap, (start + latency, self.seq, hop + 1, links, busy, latency, tag))
        return None
