"""Optional packet-level network timing with ns-3 (the PyPI `ns3` wheel, extra `[ns3]`).

Collectives are decomposed by our own step engine; every algorithm step's concurrent messages
are simulated once in ns-3 (TCP bulk transfers over point-to-point links, MTU 9000) and the
slowest delivery is the step's network time. Results are cached by (dimension, step pattern,
bytes): serving repeats the same sizes every layer. Ring dimensions become rings of links,
FullyConnected a full mesh, Switch a star around one router. Importing ns-3 costs seconds and
hundreds of MB once per process; each distinct step then costs milliseconds to seconds.
This is TCP over Ethernet-like links, not ASTRA-Sim's RDMA ns-3 backend.
"""

from __future__ import annotations

from functools import lru_cache

from astra_sim.collective_steps import phase_steps, step_peers
from astra_sim.collectives import collective_phases
from astra_sim.system import SystemConfig
from astra_sim.topology import Dimension

INSTALL_HINT = "install the optional extra: pip install -e '.[ns3]' (needs a C++ compiler)"
_PROBE = """
#include "ns3/packet-sink.h"
namespace llmsim_probe {
  std::map<uint32_t, uint64_t> last;
  void Rx(uint32_t id, ns3::Ptr<const ns3::Packet> p, const ns3::Address& a) {
    last[id] = ns3::Simulator::Now().GetNanoSeconds();
  }
  void Connect(ns3::Ptr<ns3::Application> app, uint32_t id) {
    app->TraceConnectWithoutContext("Rx", ns3::MakeBoundCallback(&Rx, id));
  }
  void Reset() { last.clear(); }
}
"""


class Ns3Unavailable(RuntimeError):
    """The ns3 extra is not installed (or failed to load)."""


@lru_cache(maxsize=1)
def _ns3():
    try:  # imported lazily: loading ns-3 costs seconds and hundreds of MB
        import cppyy
        from ns import ns
    except Exception as exc:  # the wheel raises several kinds of errors when broken
        raise Ns3Unavailable(f"the ns3 network backend is not available ({exc}); "
                             f"{INSTALL_HINT}") from None
    cppyy.cppdef(_PROBE)
    return ns, cppyy.gbl.llmsim_probe


def _links(dim: Dimension) -> list[tuple[int, int]]:
    p = dim.npus
    if dim.topology == "Switch":
        return [(i, p) for i in range(p)]  # node p is the switch
    if dim.topology == "Ring":
        return sorted({tuple(sorted((i, (i + 1) % p))) for i in range(p)})
    return [(i, j) for i in range(p) for j in range(i + 1, p)]


@lru_cache(maxsize=4096)
def simulate_messages(dim: Dimension, messages: tuple[tuple[int, int, int], ...]) -> int:
    """ns of the slowest of concurrent (src, dst, bytes) TCP transfers starting together."""
    ns, probe = _ns3()
    ns.Simulator.Destroy()
    probe.Reset()
    p = dim.npus
    nodes = ns.NodeContainer()
    nodes.Create(p + (1 if dim.topology == "Switch" else 0))
    ns.InternetStackHelper().Install(nodes)
    helper = ns.PointToPointHelper()
    gbps = dim.bandwidth_gbps * (1 << 30) / 1e9 * 8
    helper.SetDeviceAttribute("DataRate", ns.StringValue(f"{gbps:.6f}Gbps"))
    # FullyConnected: one link of the dimension's latency; Switch: latency per hop.
    helper.SetChannelAttribute("Delay", ns.StringValue(f"{int(dim.latency_ns)}ns"))
    helper.SetDeviceAttribute("Mtu", ns.UintegerValue(9000))
    address = ns.Ipv4AddressHelper()
    node_address: dict[int, object] = {}
    for k, (a, b) in enumerate(_links(dim)):
        pair = ns.NodeContainer()
        pair.Add(nodes.Get(a))
        pair.Add(nodes.Get(b))
        address.SetBase(ns.Ipv4Address(f"10.{k // 250}.{k % 250}.0"),
                        ns.Ipv4Mask("255.255.255.0"))
        interfaces = address.Assign(helper.Install(pair))
        node_address.setdefault(a, interfaces.GetAddress(0))
        node_address.setdefault(b, interfaces.GetAddress(1))
    ns.Ipv4GlobalRoutingHelper.PopulateRoutingTables()
    for k, (src, dst, nbytes) in enumerate(messages):
        port = 10000 + k
        any_address = ns.InetSocketAddress(ns.Ipv4Address.GetAny(), port).ConvertTo()
        sink = ns.PacketSinkHelper("ns3::TcpSocketFactory", any_address)
        probe.Connect(sink.Install(nodes.Get(dst)).Get(0), k)
        target = ns.InetSocketAddress(node_address[dst], port).ConvertTo()
        bulk = ns.BulkSendHelper("ns3::TcpSocketFactory", target)
        bulk.SetAttribute("MaxBytes", ns.UintegerValue(max(nbytes, 1)))
        bulk.Install(nodes.Get(src)).Start(ns.Seconds(0))
    ns.Simulator.Run()
    finish = max(int(t) for t in dict(probe.last).values())
    ns.Simulator.Destroy()
    return finish


@lru_cache(maxsize=4096)
def ns3_collective_ns(kind: str, size: int, dims: tuple[Dimension, ...],
                      system: SystemConfig) -> int:
    """Lockstep collective time with every step's network time simulated by ns-3."""
    algorithms = system.algorithms(kind)
    usable = [(d, algorithms[i]) for i, d in enumerate(dims[:len(algorithms)]) if d.npus > 1]
    if not usable:
        return 0
    chunk = max(size // system.preferred_dataset_splits,
                0 if kind == "all_gather" else 1)
    total = 0
    for dim, algorithm, op, phase_size in collective_phases(kind, chunk, usable,
                                                  system.collective_optimization):
        for rule, nbytes, reduction in phase_steps(algorithm, op, dim.npus, phase_size, system):
            messages = tuple((pos, peer, nbytes) for pos in range(dim.npus)
                             for _, peer in step_peers(rule, pos, dim.npus))
            total += simulate_messages(dim, messages) + system.endpoint_delay + reduction
        total += system.endpoint_delay
    chunks = -(-system.preferred_dataset_splits // system.active_chunks_per_dimension)
    return chunks * total

