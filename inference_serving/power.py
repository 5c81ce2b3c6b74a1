"""Power and energy per node (serving.md §11), measured by an observer of the serving loop.

Static power (every part at idle, the CPU at its baseline utilisation) accrues with time.
Dynamic energy comes from each pipeline stage's `IterationCost`: NPU active and CPU energy from
the compute busy time, DRAM energy from the memory-tier bytes, link energy from the ring volume,
and PIM active energy from the PIM busy time. It is charged while the stage runs, spread evenly
over the stage's span and so split across log windows by time; the compatibility profile can
instead charge it all when the batch is scheduled, as the existing simulator does. NPU standby
power is drawn for up to `standby_duration` after an instance falls idle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from inference_serving.cluster_config import GIB, ClusterConfig, NodeSpec
from inference_serving.instance import Instance
from inference_serving.invariants import InvariantError
from inference_serving.iteration_cost import IterationCost, Usage
from inference_serving.observers import Observer
from inference_serving.power_config import PowerSpec
from inference_serving.scheduler.base import Batch
from inference_serving.simulator import SimResult
from llmsim_core.errors import InputError

COMPONENTS = ("base_node", "npu", "cpu", "dram", "link", "nic", "storage")
LABELS = ("Base Node", "NPU", "CPU", "Memory", "Link", "NIC", "Storage")
BASE, NPU, CPU, DRAM, LINK, NIC, STORAGE = range(7)
J_PER_PJ_BYTE = 8e-12  # pJ/bit -> J per byte
CPU_ACTIVE_UTIL = 0.7  # CPU utilisation while an NPU computes (the existing model's constant)
BAR = "-" * 80
LABEL_WIDTH = 68


@dataclass(frozen=True, slots=True)
class PimPower:
    """A node's PIM device (serving.md §10, §11): idle and peak power per channel (W) and the
    channel capacity (GB), which replace the DRAM block's DIMM size and idle power."""

    idle_w: float
    peak_w: float
    channel_gb: float


def no_pim_busy(usage: Usage) -> Mapping[int, int]:
    """PIM busy ns per node of an iteration: none without PIM attention offloading."""
    return {}


def static_parts(node: NodeSpec, spec: PowerSpec, pim: PimPower | None) -> list[float]:
    """The node's static power per component (W), in COMPONENTS order."""
    counts: dict[str, int] = {}
    for inst in node.instances:
        counts[inst.hardware] = counts.get(inst.hardware, 0) + inst.npu_num
    dimm_gb = pim.channel_gb if pim is not None else spec.dram_dimm_gb
    dimm_w = pim.idle_w if pim is not None else spec.dram_idle_w
    if dimm_gb is None or dimm_w is None:
        missing = "dimm_size" if dimm_gb is None else "idle_power"
        raise InputError("missing required key", f"key 'nodes[{node.node_id}].power.dram."
                         f"{missing}' in the cluster config",
                         "add it (only PIM attention offloading supplies it from the device)")
    dimms = int(node.cpu_mem.size_bytes / GIB // dimm_gb)
    return [spec.base_w,
            sum(spec.npu[hw].idle_w * n for hw, n in counts.items()),
            spec.cpu_idle_w + (spec.cpu_active_w - spec.cpu_idle_w) * spec.cpu_util,
            dimm_w * dimms,
            spec.link_idle_w * spec.num_links,
            spec.nic_idle_w * spec.num_nics,
            spec.storage_idle_w * spec.num_storage]


@dataclass(frozen=True, slots=True)
class _Rates:
    """One instance's dynamic energy coefficients (J per ns or per byte)."""

    node: int
    npu_j_per_ns: float
    cpu_j_per_ns: float
    dram_j_per_byte: float
    link_j_per_byte: float
    standby_w: float  # (standby − idle) × npu_num
    standby_ns: int


@dataclass(slots=True)
class PowerReport:
    """A finished run's energy per node and component (J) and power per log window (W)."""

    interval_s: float
    windows_w: list[float]
    node_windows_w: dict[int, list[float]]
    components_j: dict[int, list[float]]
    idle_w: float
    generated_tokens: int

    @property
    def node_totals_j(self) -> dict[int, float]:
        """Energy per node (J)."""
        return {n: sum(parts) for n, parts in self.components_j.items()}

    @property
    def total_j(self) -> float:
        """Energy of the whole cluster (J)."""
        return sum(self.node_totals_j.values())

    @property
    def energy_per_token_j(self) -> float | None:
        """Energy per generated token (J), None when nothing was generated."""
        return self.total_j / self.generated_tokens if self.generated_tokens else None

    def numbers(self) -> dict:
        """The report for --metrics-json and the API's summary."""
        return {"total_energy_kj": self.total_j / 1000,
                "energy_per_token_j": self.energy_per_token_j,
                "idle_power_w": round(self.idle_w, 6),
                "interval_s": self.interval_s,
                "window_power_w": list(self.windows_w),
                "nodes": {str(n): {"total_energy_j": sum(parts),
                                   "components_j": dict(zip(COMPONENTS, parts, strict=True)),
                                   "window_power_w": list(self.node_windows_w[n])}
                          for n, parts in self.components_j.items()}}

    def summary_lines(self) -> list[str]:
        """The `Power Modeling Results` block of the final summary (formats.md §6.4)."""
        lines = ["Power Modeling Results".center(80), BAR,
                 _line("Total energy consumption (kJ):", f"{self.total_j / 1000:.2f}")]
        per_token = self.energy_per_token_j
        if per_token is not None:
            lines.append(_line("Energy per generated token (J/token):", f"{per_token:.4f}"))
        for node, parts in self.components_j.items():
            lines += [BAR, _line(f"Node {node} total energy consumption (kJ):",
                                 f"{sum(parts) / 1000:.2f}")]
            for k, (label, joules) in enumerate(zip(LABELS, parts, strict=True)):
                glyph = "└─" if k == len(LABELS) - 1 else "├─"
                lines.append(_line(f"{glyph} {label} energy consumption (J):", f"{joules:.2f}"))
            lines.append(BAR)
        lines += [f"Power per {float(self.interval_s)} sec (W): {self.windows_w}", BAR]
        return lines


def _line(label: str, value: str) -> str:
    return f"{label:<{LABEL_WIDTH}}{value}"


@dataclass(slots=True)
class _Ramp:
    """Dynamic energy (npu, cpu, dram, link) spread evenly over [start, end] of one stage."""

    start: int
    end: int
    node: int
    energy: tuple[float, float, float, float]
    charged: int = field(default=0)


class PowerMeter(Observer):
    """Accumulates every node's energy during the run and the power of every log window."""

    def __init__(self, cluster: ClusterConfig, instances: list[Instance], interval_s: float,
                 at_schedule: bool = False, check: bool = False,
                 pim: Mapping[int, PimPower] | None = None,
                 pim_busy: Callable[[Usage], Mapping[int, int]] = no_pim_busy) -> None:
        pim = pim or {}
        self.interval_s = interval_s
        self.at_schedule = at_schedule
        self.check = check
        self.pim_busy = pim_busy
        self.nodes = [node.node_id for node in cluster.nodes]
        self.static = {node.node_id: static_parts(node, node.power, pim.get(node.node_id))
                       for node in cluster.nodes}
        self.static_w = {n: sum(parts) for n, parts in self.static.items()}
        self.pim_active_w = {n: p.peak_w - p.idle_w for n, p in pim.items()}
        self.dynamic = {n: [0.0] * 7 for n in self.nodes}
        self.rates: dict[int, _Rates] = {}
        for inst in instances:
            spec = cluster.nodes[inst.spec.node_id].power
            npu = spec.npu[inst.spec.hardware]
            cpu = (spec.cpu_active_w - spec.cpu_idle_w) * max(CPU_ACTIVE_UTIL - spec.cpu_util, 0)
            self.rates[inst.index] = _Rates(
                inst.spec.node_id, (npu.active_w - npu.idle_w) * 1e-9, cpu * 1e-9,
                spec.dram_pj_per_bit * J_PER_PJ_BYTE, spec.link_pj_per_bit * J_PER_PJ_BYTE,
                (npu.standby_w - npu.idle_w) * inst.spec.npu_num, round(npu.standby_s * 1e9))
        self.ramps: list[_Ramp] = []
        self.stage_free: dict[int, list[int]] = {}
        # Instance -> [idle since, standby ends, charged up to] while it sits idle.
        self.standby: dict[int, list[int]] = {}
        self.last_ns = 0
        self.last_energy = dict.fromkeys(self.nodes, 0.0)
        self.windows_w: list[float] = []
        self.node_windows_w: dict[int, list[float]] = {n: [] for n in self.nodes}

    @property
    def idle_w(self) -> float:
        """The cluster's power with every part idle (W)."""
        return sum(self.static_w.values())

    def stage_energy(self, rates: _Rates, cost: IterationCost) -> tuple[float, ...]:
        """(npu, cpu, dram, link) energy of one stage (J) and the PIM active energy per node."""
        usage = cost.usage()
        busy = usage.devices
        one_rank = max((b.compute_ns for b in busy.values()), default=0) - usage.overhead_ns
        compute = sum(b.compute_ns for b in busy.values()) - len(busy) * usage.overhead_ns
        dram_bytes = sum(usage.tier_bytes.values()) - usage.staging_bytes
        dram = dram_bytes * rates.dram_j_per_byte
        for node_busy in self.pim_busy(usage).items():
            dram += self.pim_active_w.get(node_busy[0], 0.0) * node_busy[1] * 1e-9
        return (compute * rates.npu_j_per_ns, one_rank * rates.cpu_j_per_ns, dram,
                sum(usage.ring_bytes.values()) * rates.link_j_per_byte)

    def on_batch_start(self, inst: Instance, batch: Batch, start_ns: int, end_ns: int,
                       costs: list[IterationCost]) -> None:
        """End the instance's standby; charge (or schedule the charge of) every stage."""
        standby = self.standby.pop(inst.index, None)
        rates = self.rates[inst.index]
        if standby is not None:
            self._charge_standby(rates, standby, start_ns)
        free = self.stage_free.setdefault(inst.index, [0] * len(costs))
        t, forward = start_ns, 0
        for s, cost in enumerate(costs):
            begin = max(t + forward, free[s])
            t, forward = begin + cost.duration_ns, cost.forward_ns
            free[s] = t
            energy = self.stage_energy(rates, cost)
            if self.at_schedule or t <= begin:
                self._add(rates.node, energy, 1.0)
            else:
                self.ramps.append(_Ramp(begin, t, rates.node, energy, begin))

    def on_batch_end(self, inst: Instance, batch: Batch, end_ns: int, finished: list) -> None:
        """An instance left with no batch in flight enters standby."""
        if not inst.in_flight:
            rates = self.rates[inst.index]
            self.standby[inst.index] = [end_ns, end_ns + rates.standby_ns, end_ns]

    def on_window(self, time_ns: int, rates: tuple[float, float]) -> None:
        """Charge everything that ran up to `time_ns` and record the window's power."""
        self._charge_until(time_ns)
        span_s = (time_ns - self.last_ns) * 1e-9
        total = 0.0
        for node in self.nodes:
            energy = self.energy_j(node, time_ns)
            watts = round((energy - self.last_energy[node]) / span_s, 2)
            self.node_windows_w[node].append(watts)
            self.last_energy[node] = energy
            total += watts
        self.windows_w.append(total)
        self.last_ns = time_ns

    def on_finish(self, result: SimResult) -> None:
        """Charge what is left and hand the report to the later observers on `result`."""
        self._charge_until(result.end_ns)
        end_s = result.end_ns * 1e-9
        components = {n: [self.dynamic[n][c] + self.static[n][c] * end_s for c in range(7)]
                      for n in self.nodes}
        result.power = PowerReport(self.interval_s, self.windows_w, self.node_windows_w,
                                   components, self.idle_w, result.counters.total_generated)
        if self.check:
            self.check_report(result.power, result.end_ns)

    def energy_j(self, node: int, time_ns: int) -> float:
        """Energy the node has used up to `time_ns` (J), with everything charged so far."""
        return sum(self.dynamic[node]) + self.static_w[node] * time_ns * 1e-9

    def check_report(self, report: PowerReport, end_ns: int) -> None:
        """Invariants: components sum to the total; no window below the idle power; the
        energy equals the time integral of the window powers (within the 0.01 W rounding)."""
        nodes = len(self.nodes)
        for node, parts in report.components_j.items():
            total = self.energy_j(node, end_ns)
            if abs(sum(parts) - total) > 1e-9 * max(total, 1.0):
                raise InvariantError(f"node {node}: components sum to {sum(parts)} J, total "
                                     f"{total} J")
        for k, watts in enumerate(report.windows_w):
            if watts < report.idle_w - 0.005 * nodes - 1e-9:
                raise InvariantError(f"window {k + 1}: {watts} W below the idle power "
                                     f"{report.idle_w} W")
        tail = sum(self.energy_j(n, end_ns) - self.last_energy[n] for n in self.nodes)
        integral = sum(report.windows_w) * self.interval_s + tail
        slack = 0.005 * nodes * self.interval_s * len(report.windows_w) + 1e-6
        if abs(integral - report.total_j) > slack + 1e-9 * report.total_j:
            raise InvariantError(f"window powers integrate to {integral} J, energy is "
                                 f"{report.total_j} J")

    def _add(self, node: int, energy: tuple[float, ...], share: float) -> None:
        dyn = self.dynamic[node]
        dyn[NPU] += energy[0] * share
        dyn[CPU] += energy[1] * share
        dyn[DRAM] += energy[2] * share
        dyn[LINK] += energy[3] * share

    def _charge_standby(self, rates: _Rates, standby: list[int], until_ns: int) -> None:
        upto = min(until_ns, standby[1])
        if upto > standby[2]:
            self.dynamic[rates.node][NPU] += rates.standby_w * (upto - standby[2]) * 1e-9
            standby[2] = upto

    def _charge_until(self, time_ns: int) -> None:
        """Charge the part of every stage and standby period that lies before `time_ns`."""
        if self.ramps:
            pending = []
            for ramp in self.ramps:
                upto = min(time_ns, ramp.end)
                if upto > ramp.charged:
                    self._add(ramp.node, ramp.energy,
                              (upto - ramp.charged) / (ramp.end - ramp.start))
                    ramp.charged = upto
                if ramp.charged < ramp.end:
                    pending.append(ramp)
            self.ramps = pending
        for index, standby in self.standby.items():
            self._charge_standby(self.rates[index], standby, time_ns)


def power_enabled(cluster: ClusterConfig) -> tuple[bool, list[int]]:
    """(power is modelled, the nodes without a power block when some others have one)."""
    without = [node.node_id for node in cluster.nodes if node.power is None]
    if len(without) == len(cluster.nodes):
        return False, []
    return not without, without
