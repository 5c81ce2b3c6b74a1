"""An instance's view of the cluster's network and memory: what its plans' messages and
transfers run on, for the closed form (times) and for the engine (topology, memory tiers).

The engine network of an instance has its TP group as dimension 0, its pipeline stages as
dimension 1 (PP > 1), and for a P/D prefill instance a two-point dimension to the paired
receivers on the decode side (receiver of local rank r: r + tp), as in the existing simulator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from astra_sim import Dimension, SystemConfig, collective_ns, send_ns
from astra_sim.engine import EngineConfig
from astra_sim.memory import Tier
from astra_sim.ns3_backend import INSTALL_HINT, Ns3Unavailable, ns3_collective_ns
from inference_serving.cluster_config import ClusterConfig, CxlPool, InstanceSpec, MemorySpec
from llmsim_core.errors import InputError
from llmsim_core.iteration_plan import CXL_PREFIX, HOST, LOCAL_MEM, PD_LINK

# The network backends by `--network-backend` name. A backend is a way of timing an
# instance's collectives, `collective_ns(kind, nbytes) -> int`, chosen in `_collectives`
# (`external` hands whole iterations to a binary through the external pricer instead); adding
# one is a line here and a branch there. There is no CUSTOM backend.
NETWORK_BACKENDS: dict[str, str] = {
    "analytical": "ASTRA-Sim's congestion-unaware closed forms",
    "analytical-aware": "congestion-aware: messages cross their route's links hop by hop",
    "ns3": "every algorithm step simulated once by ns-3 (extra [ns3])",
    "external": "an external ASTRA-Sim binary (--astra-sim-bin)",
}


def host_tier(mem: MemorySpec, devices: int = 1, pim_channels: int = 0) -> Tier:
    """Nodes' CPU memories as an engine tier, one FIFO per device (node) and per (device, PIM
    channel); the existing backend truncates both parameters."""
    return Tier(int(mem.latency_ns), max(int(mem.bw_bytes_per_ns), 1), devices,
                pim_channels=pim_channels)


def cxl_tier(pool: CxlPool) -> Tier:
    """The CXL pool as an engine tier: one FIFO per device, each with the pool's bandwidth and
    latency (truncated like the host memory's)."""
    return host_tier(pool.memory, pool.num_devices)


def local_tier(mem: MemorySpec) -> Tier:
    """An NPU's device memory as an engine tier: every NPU its own, no queue."""
    return Tier(int(mem.latency_ns), max(int(mem.bw_bytes_per_ns), 1), queued=False)


@dataclass(slots=True)
class InstanceFabric:
    """Links, collectives and memory of one instance."""

    spec: InstanceSpec
    host: MemorySpec
    tp_dim: Dimension
    system: SystemConfig
    backend: str = "analytical"
    stage_dim: Dimension | None = None
    pd_dim: Dimension | None = None
    cxl: CxlPool | None = None
    local_offloading: bool = False  # device-memory weight reads are timed
    pim_channels: int = 0  # PIM channels of the node's host memory (attention offloading)
    _collective: Callable[[str, int], int] = field(default=lambda kind, nbytes: 0)

    @property
    def aware(self) -> bool:
        """True with the congestion-aware network model."""
        return self.backend == "analytical-aware"

    def collective_ns(self, kind: str, nbytes: int) -> int:
        """Lockstep time of one TP collective."""
        return self._collective(kind, nbytes)

    def send_ns(self, link: str, nbytes: int) -> int:
        """One point-to-point message on `link` (P/D hand-off or stage to stage)."""
        dim = self.pd_dim if link == PD_LINK else self.stage_dim
        if dim is None:
            raise ValueError(f"instance {self.spec.instance_id} has no {link} link")
        return send_ns(nbytes, (dim,), 0, 1, self.aware)

    def memory_ns(self, tier: str, nbytes: int) -> int:
        """One access to a memory tier: latency + bytes / bandwidth, parameters truncated."""
        if tier == HOST:
            mem = self.host
        elif tier == LOCAL_MEM:
            mem = self.spec.npu_mem
        elif tier.startswith(CXL_PREFIX) and self.cxl is not None:
            mem = self.cxl.memory
        else:
            raise ValueError(f"unknown memory tier {tier}")
        return int(mem.latency_ns) + nbytes // max(int(mem.bw_bytes_per_ns), 1)

    def engine_dims(self) -> tuple[Dimension, ...]:
        """The instance's engine network: TP group, then pipeline stages or the P/D pair."""
        dims = (self.tp_dim,)
        if self.stage_dim is not None and self.spec.pp > 1:
            dims += (Dimension(self.stage_dim.topology, self.spec.pp, self.stage_dim.bandwidth_gbps,
                               self.stage_dim.latency_ns),)
        elif self.pd_dim is not None:
            dims += (self.pd_dim,)
        return dims

    def engine_config(self) -> EngineConfig:
        """Engine settings of this instance's network."""
        return EngineConfig(dims=self.engine_dims(), system=self.system, aware=self.aware)

    def link_name(self, link: str) -> str:
        """Name of a link in `IterationCost.link_bytes`."""
        return f"{link}:{self.spec.instance_id}"


def _collectives(fabric: InstanceFabric) -> Callable[[str, int], int]:
    spec, dims, system = fabric.spec, (fabric.tp_dim,), fabric.system
    if fabric.backend == "ns3":
        try:  # load ns-3 once, up front, even where no collective needs it (TP 1)
            ns3_collective_ns("all_reduce", 1 << 20, dims, system)
        except Ns3Unavailable as exc:
            raise InputError("the ns3 network backend is not installed", "--network-backend "
                             "ns3", INSTALL_HINT) from exc
    if spec.tp == 1:
        return lambda kind, nbytes: 0
    if fabric.backend == "ns3":
        return lambda kind, nbytes: ns3_collective_ns(kind, nbytes, dims, system)
    aware = fabric.aware
    return lambda kind, nbytes: collective_ns(kind, nbytes, dims, system, aware=aware)


def instance_fabric(cluster: ClusterConfig, spec: InstanceSpec, backend: str,
                    local_offloading: bool = False) -> InstanceFabric:
    """The fabric of one instance: its TP group on the cluster's NPU link, stage-to-stage sends
    on the same link, and P/D sends over the intra-node link when a decode instance shares the
    node, else over the inter-node link."""
    node = cluster.nodes[spec.node_id]
    link_bw, link_latency = cluster.link_bw_gbps, cluster.link_latency_ns
    pd_dim = None
    if spec.pd_type == "prefill":
        decoders = [i for i in cluster.instances if i.pd_type == "decode"]
        peer = next((i for i in decoders if i.node_id == spec.node_id), decoders[0])
        bw, latency = cluster.link(spec.node_id, peer.node_id)
        pd_dim = Dimension("FullyConnected", 2, bw, latency)
    fabric = InstanceFabric(
        spec=spec, host=node.cpu_mem,
        tp_dim=Dimension("FullyConnected", spec.tp, link_bw, link_latency),
        system=SystemConfig(local_mem_bw=spec.npu_mem.bw_bytes_per_ns),
        backend=backend,
        stage_dim=Dimension("FullyConnected", 2, link_bw, link_latency),
        pd_dim=pd_dim, cxl=cluster.cxl_mem, local_offloading=local_offloading)
    fabric._collective = _collectives(fabric)
    return fabric


def receiver_tp(cluster: ClusterConfig, spec: InstanceSpec) -> int | None:
    """TP degree of the decode instance a prefill instance sends to."""
    if spec.pd_type != "prefill":
        return None
    decoders = [i for i in cluster.instances if i.pd_type == "decode"]
    peer = next((i for i in decoders if i.node_id == spec.node_id), decoders[0])
    return peer.tp

