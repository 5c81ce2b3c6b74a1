"""Message delivery on the network: congestion-unaware formula or per-link FIFOs (§5.3–5.4)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from astra_sim.links import LinkSim, route
from astra_sim.topology import Dimension, coordinates, total_npus


class Network:
    """Times point-to-point messages; the aware model keeps link busy-until state."""

    def __init__(self, dims: Sequence[Dimension], aware: bool = False) -> None:
        self.dims = tuple(dims)
        self.aware = aware
        self.num_npus = total_npus(self.dims)
        if aware and len(self.dims) > 1:
            raise ValueError("the congestion-aware model accepts only 1-D topologies")
        self.link_free: dict[tuple, int] = {}

    def route_dim(self, src: int, dst: int) -> tuple[int, int, int]:
        """(dimension index, src coordinate, dst coordinate) of the lowest differing dim."""
        a, b = coordinates(src, self.dims), coordinates(dst, self.dims)
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return i, x, y
        raise ValueError(f"message from NPU {src} to itself")

    def deliver(self, src: int, dst: int, nbytes: int, depart: int) -> int:
        """Arrival time of a message that leaves `src` at `depart`."""
        index, x, y = self.route_dim(src, dst)
        dim = self.dims[index]
        if not self.aware:
            return depart + dim.net_ns(nbytes, dim.hops(y - x))
        return self._through_links(dim, route(dim, x, y), nbytes, depart)

    def link_sim(self) -> LinkSim:
        """A hop-by-hop simulation on the (single) aware dimension sharing this link state."""
        return LinkSim(self.dims[0], self.link_free)

    def _through_links(self, dim: Dimension, links: Sequence[tuple], nbytes: int, t: int) -> int:
        """Store-and-forward: each link is a FIFO busy floor(m/B) per message."""
        busy = int(nbytes // dim.bytes_per_ns)
        for link in links:
            start = max(t, self.link_free.get(link, 0))
            self.link_free[link] = start + busy
            t = start + dim.link_ns(nbytes)
        return t


_LIST = re.compile(r"^\s*([A-Za-z_-]+)\s*:\s*\[(.*)\]\s*$")


def parse_network_yml(text: str, where: str = "network.yml") -> tuple[Dimension, ...]:
    """Parse the four equal-length lists of a network.yml (flow or block style)."""
    values: dict[str, list[str]] = {}
    current: str | None = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        match = _LIST.match(line)
        if match:
            values[match.group(1)] = [v.strip().strip("'\"") for v in match.group(2).split(",")
                                      if v.strip()]
            current = None
        elif line.strip().startswith("- ") and current is not None:
            values[current].append(line.strip()[2:].strip().strip("'\""))
        elif line.rstrip().endswith(":"):
            current = line.strip()[:-1].strip()
            values[current] = []
        else:
            raise ValueError(f"{where}: cannot parse line {raw!r}")
    keys = ("topology", "npus_count", "bandwidth", "latency")
    missing = [k for k in keys if k not in values]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)}")
    if len({len(values[k]) for k in keys}) != 1 or not values["topology"]:
        raise ValueError(f"{where}: topology, npus_count, bandwidth and latency must be "
                         "non-empty lists of equal length")
    try:
        return tuple(Dimension(t, int(n), float(b), float(lat)) for t, n, b, lat in
                     zip(*(values[k] for k in keys), strict=True))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def load_network(path: Path) -> tuple[Dimension, ...]:
    """Read a network.yml file."""
    return parse_network_yml(path.read_text(), str(path))


def network_yml(dims: Sequence[Dimension]) -> str:
    """Serialize dimensions as a flow-style network.yml."""
    def row(values: list) -> str:
        return "[ " + ", ".join(str(v) for v in values) + " ]"
    return (f"topology: {row([d.topology for d in dims])}\n"
            f"npus_count: {row([d.npus for d in dims])}\n"
            f"bandwidth: {row([float(d.bandwidth_gbps) for d in dims])}\n"
            f"latency: {row([float(d.latency_ns) for d in dims])}\n")
