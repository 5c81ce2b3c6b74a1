"""Parser of the simulator console output (formats.md §6.2–6.4), ours and the existing one's."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from llmsim_core.errors import InputError

# Values are captured loosely (any run of non-blank characters) and then read with the strict
# grammar of `_DECIMAL`, so a malformed number is an error naming its line, not a line skipped.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TICK = re.compile(r"^\[(\S*?)s\]\s*Avg prompt throughput:\s*(\S+?),?\s.*?"
                   r"generation throughput:\s*(\S+)")
_INSTANCE = re.compile(r"Instance\[(\S*?)\].*?Each NPU Memory Usage\s+(\S+)\s+MB")
_NODE = re.compile(r"Node\[(\S*?)\]:\s+Total CPU Memory Usage\s+(\S+)\s+MB")
_HIT = re.compile(r"Prefix Cache Hit ratio\s+(\S+)\s+%")
_POWER_TICK = re.compile(r"Avg power consumption:\s*(\S+?)\s*W")
_LABEL = re.compile(r"^([A-Za-z][^:]*?(?:\([^)]*\))?):\s+(\S.*)$")
_SECTION = re.compile(r"^\s*Instance \[(\S*?)\]\s*$")
_ENERGY = re.compile(r"([A-Za-z ]+?) energy consumption \(J\):\s+(\S+)")
_SIM_TIME = re.compile(r"Total simulation time:\s*(\S+?)h\s+(\S+?)m\s+(\S+?)s")
# A plain non-negative decimal as the simulator prints it (`12.5`, `3`, `1e-05`): no sign,
# `_` separators, `nan`, `inf` or non-ASCII digits, which float() would all take.
_NUMBER = r"[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
_DECIMAL = re.compile(_NUMBER)
_COUNT = re.compile(r"[0-9]{1,9}")  # an instance or node index, hours, minutes
_TOKENS = re.compile(r"[0-9]{1,18}")  # `Total generated tokens`, read by ConsoleRun
# The final lists, matched as a whole (a regex walks nested brackets without recursion).
_PAIR = rf"\(\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\)"
_PAIRS = re.compile(rf"\[\s*(?:{_PAIR}\s*(?:,\s*{_PAIR}\s*)*)?\]")
_VALUES = re.compile(rf"\[\s*(?:{_NUMBER}\s*(?:,\s*{_NUMBER}\s*)*)?\]")
_FIX = "pass the stdout of a run"
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


class _Reader:
    """Reads the values of one log, naming the line of any that is malformed."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.lineno = 0

    def fail(self, text: str) -> InputError:
        """The error for an unreadable value on the current line."""
        shown = text if len(text) <= 40 else text[:40] + "..."
        return InputError(f"line {self.lineno} of the log has an unreadable value ({shown!r})",
                          self.where, _FIX)

    def number(self, text: str) -> float:
        """A plain decimal, finite."""
        if not _DECIMAL.fullmatch(text):
            raise self.fail(text)
        value = float(text)
        if not math.isfinite(value):  # 1e999 overflows to infinity
            raise self.fail(text)
        return value

    def count(self, text: str) -> int:
        """A whole number of at most nine digits (an index, hours, minutes)."""
        if not _COUNT.fullmatch(text):
            raise self.fail(text)
        return int(text)

    def pairs(self, text: str) -> list[tuple[float, float]]:
        """`[(a, b), ...]` of plain decimals."""
        if not _PAIRS.fullmatch(text):
            raise self.fail(text)
        found = re.findall(_PAIR, text)
        return [(self.number(a), self.number(b)) for a, b in found]

    def values(self, text: str) -> list[float]:
        """`[a, b, ...]` of plain decimals."""
        if not _VALUES.fullmatch(text):
            raise self.fail(text)
        return [self.number(v) for v in re.findall(_NUMBER, text)]


def _tree_line(tick: Tick, line: str, read: _Reader) -> None:
    """Add one status-tree line (instance, node or power) to `tick`."""
    hit = _HIT.search(line)
    if m := _INSTANCE.search(line):
        index = read.count(m[1])
        tick.npu_mem_mb[index] = read.number(m[2])
        if hit:
            tick.npu_hit_pct[index] = read.number(hit[1])
    elif m := _NODE.search(line):
        index = read.count(m[1])
        tick.cpu_mem_mb[index] = read.number(m[2])
        if hit:
            tick.cpu_hit_pct[index] = read.number(hit[1])
    elif m := _POWER_TICK.search(line):
        tick.power_w = read.number(m[1])



def parse_console(text: str, where: str = "the console log") -> ConsoleRun:
    """Parse a console log; accepts both tree-glyph styles and ANSI colour codes. A malformed
    value is an InputError naming its line and `where` (the log's path)."""
    lines = _ANSI.sub("", text).splitlines()
    read = _Reader(where)
    ticks: list[Tick] = []
    start = next((i for i, ln in enumerate(lines) if "Simulation results" in ln), len(lines))
    for read.lineno, line in enumerate(lines[:start], start=1):
        if m := _TICK.match(line.strip()):
            ticks.append(Tick(read.number(m[1]), read.number(m[2]), read.number(m[3])))
        elif ticks:
            _tree_line(ticks[-1], line, read)
    summary: list[tuple[str, str]] = []
    throughput: list[tuple[float, float]] = []
    power: list[float] | None = None
    energy: dict[str, float] = {}
    means: dict[int, dict[str, float]] = {}
    total_kj = sim_time = None
    instance: int | None = None
    for read.lineno, raw in enumerate(lines[start:], start=start + 1):
        line = raw.strip().lstrip("├└─| ").strip()
        if m := _SECTION.match(raw):
            instance = read.count(m[1])
            means.setdefault(instance, {})
            continue
        if line.startswith("Fleet ("):  # the pooled block after the instances
            instance = None
            continue
        if line.startswith("Throughput per "):
            throughput = read.pairs(line.split(":", 1)[1].strip())
        elif line.startswith("Power per "):
            power = read.values(line.split(":", 1)[1].strip())
        if m := _SIM_TIME.search(line):
            sim_time = read.count(m[1]) * 3600 + read.count(m[2]) * 60 + read.number(m[3])
        if m := _ENERGY.match(line):
            energy[m[1]] = energy.get(m[1], 0.0) + read.number(m[2])
        if m := _LABEL.match(line):
            label, value = m[1].strip(), m[2].strip()
            if label.startswith(("Throughput per", "Power per")):
                continue
            if label == "Total energy consumption (kJ)":
                total_kj = read.number(value)
            # The two summary values ConsoleRun's properties convert.
            if instance is None and label == "Total generated tokens" and \
                    not _TOKENS.fullmatch(value):
                raise read.fail(value)
            if instance is None and label == "Average generation throughput (tok/s)":
                read.number(value)
            for stat in _STATS:
                if instance is not None and label == f"Mean {stat} (ms)":
                    means[instance][stat] = read.number(value)
            summary.append((f"Instance [{instance}] {label}" if instance is not None
                            else label, value))
    return ConsoleRun(ticks=ticks, summary=summary, throughput=throughput, power_w=power,
                      energy_j=energy, total_energy_kj=total_kj, instance_means_ms=means,
                      sim_time_s=sim_time)
