"""Parser of the simulator console output (formats.md §6.2–6.4), ours and the existing one's."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TICK = re.compile(r"^\[(\d+(?:\.\d+)?)s\]\s*Avg prompt throughput:\s*([\d.]+).*?"
                   r"generation throughput:\s*([\d.]+)")
_INSTANCE = re.compile(r"Instance\[(\d+)\].*?Each NPU Memory Usage\s+([\d.]+)\s+MB")
_NODE = re.compile(r"Node\[(\d+)\]:\s+Total CPU Memory Usage\s+([\d.]+)\s+MB")
_HIT = re.compile(r"Prefix Cache Hit ratio\s+([\d.]+)\s+%")
_POWER_TICK = re.compile(r"Avg power consumption:\s*([\d.]+)\s*W")
_LABEL = re.compile(r"^([A-Za-z][^:]*?(?:\([^)]*\))?):\s+(\S.*)$")
_SECTION = re.compile(r"^\s*Instance \[(\d+)\]\s*$")
_ENERGY = re.compile(r"([A-Za-z ]+?) energy consumption \(J\):\s+([\d.]+)")
_SIM_TIME = re.compile(r"Total simulation time:\s*(\d+)h\s+(\d+)m\s+([0-9.]+)s")
_STATS = ("TTFT", "TPOT", "ITL")


@dataclass(slots=True)
class Tick:
    """One periodic block: window end time, rates, per-instance and per-node state."""

    time_s: float
    prompt_tok_s: float
    gen_tok_s: float
    npu_mem_mb: dict[int, float] = field(default_factory=dict)
    npu_hit_pct: dict[int, float] = field(default_factory=dict)
    cpu_mem_mb: dict[int, float] = field(default_factory=dict)
    cpu_hit_pct: dict[int, float] = field(default_factory=dict)
    power_w: float | None = None


@dataclass(slots=True)
class ConsoleRun:
    """Everything the evaluation reads from one run's console output."""

    ticks: list[Tick]
    summary: list[tuple[str, str]]  # final-summary "label: value" lines, instance-qualified
    throughput: list[tuple[float, float]]  # final (prompt, generation) list per interval
    power_w: list[float] | None
    energy_j: dict[str, float]  # component -> J, summed over nodes
    total_energy_kj: float | None
    instance_means_ms: dict[int, dict[str, float]]  # instance -> {"TTFT": mean ms, ...}
    sim_time_s: float | None

    def value(self, label: str) -> str | None:
        """The summary value printed after `label`, or None."""
        return next((v for k, v in self.summary if k == label), None)

    @property
    def generated_tokens(self) -> int:
        """`Total generated tokens` of the summary."""
        return int(self.value("Total generated tokens") or 0)

    @property
    def generation_throughput(self) -> float:
        """`Average generation throughput (tok/s)` of the summary."""
        return float(self.value("Average generation throughput (tok/s)") or 0.0)


def _tree_line(tick: Tick, line: str) -> None:
    hit = _HIT.search(line)
    if m := _INSTANCE.search(line):
        tick.npu_mem_mb[int(m[1])] = float(m[2])
        if hit:
            tick.npu_hit_pct[int(m[1])] = float(hit[1])
    elif m := _NODE.search(line):
        tick.cpu_mem_mb[int(m[1])] = float(m[2])
        if hit:
            tick.cpu_hit_pct[int(m[1])] = float(hit[1])
    elif m := _POWER_TICK.search(line):
        tick.power_w = float(m[1])


def parse_console(text: str) -> ConsoleRun:
    """Parse a console log; accepts both tree-glyph styles and ANSI colour codes."""
    lines = _ANSI.sub("", text).splitlines()
    ticks: list[Tick] = []
    start = next((i for i, ln in enumerate(lines) if "Simulation results" in ln), len(lines))
    for line in lines[:start]:
        if m := _TICK.match(line.strip()):
            ticks.append(Tick(float(m[1]), float(m[2]), float(m[3])))
        elif ticks:
            _tree_line(ticks[-1], line)
    summary: list[tuple[str, str]] = []
    throughput: list[tuple[float, float]] = []
    power: list[float] | None = None
    energy: dict[str, float] = {}
    means: dict[int, dict[str, float]] = {}
    total_kj = sim_time = None
    instance: int | None = None
    for raw in lines[start:]:
        line = raw.strip().lstrip("├└─| ").strip()
        if m := _SECTION.match(raw):
            instance = int(m[1])
            means.setdefault(instance, {})
            continue
        if line.startswith("Fleet ("):  # the pooled block after the instances
            instance = None
            continue
        if line.startswith("Throughput per "):
            throughput = [tuple(map(float, t)) for t in
                          ast.literal_eval(line.split(":", 1)[1].strip())]
        elif line.startswith("Power per "):
            power = [float(w) for w in ast.literal_eval(line.split(":", 1)[1].strip())]
        if m := _SIM_TIME.search(line):
            sim_time = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
        if m := _ENERGY.match(line):
            energy[m[1]] = energy.get(m[1], 0.0) + float(m[2])
        if m := _LABEL.match(line):
            label, value = m[1].strip(), m[2].strip()
            if label.startswith(("Throughput per", "Power per")):
                continue
            if label == "Total energy consumption (kJ)":
                total_kj = float(value)
            for stat in _STATS:
                if instance is not None and label == f"Mean {stat} (ms)":
                    means[instance][stat] = float(value)
            summary.append((f"Instance [{instance}] {label}" if instance is not None
                            else label, value))
    return ConsoleRun(ticks=ticks, summary=summary, throughput=throughput, power_w=power,
                      energy_j=energy, total_energy_kj=total_kj, instance_means_ms=means,
                      sim_time_s=sim_time)
