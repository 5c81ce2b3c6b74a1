"""The parsed-TSV series of evaluation.md §3.1, derived from a parsed console run."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from evaluation.console import ConsoleRun
from llmsim_core.errors import InputError
from llmsim_core.strict_json import read_text

Table = tuple[tuple[str, ...], list[tuple]]  # (header, rows)
ENERGY_COMPONENTS = (("Base Node", "Others"), ("NPU", "GPU"), ("CPU", "CPU"),
                     ("Memory", "Memory"), ("Link", "Link"), ("NIC", "NIC"),
                     ("Storage", "Storage"))


def _num(value: float) -> str:
    # 12 significant digits drop float noise of means (23.035, not 23.035000000000004).
    return repr(float(f"{value:.12g}")) if isinstance(value, float) else str(value)


def write_tsv(path: Path, table: Table) -> None:
    """Write a header row and data rows, tab-separated."""
    header, rows = table
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(header)] + ["\t".join(_num(v) if not isinstance(v, str) else v
                                             for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def read_tsv(path: Path) -> dict[str, list]:
    """Columns of a TSV by header name; numbers as float, other cells as text. A table that
    is not UTF-8, has no header or data, has a row of another width or a non-finite number
    is an InputError naming the line."""
    fix = "restore the file (a parsed series TSV: a header, then rows of as many cells)"
    lines = [ln.split("\t") for ln in read_text(path, fix).splitlines() if ln.strip()]
    if len(lines) < 2:
        raise InputError("no header and data rows", str(path), fix)
    header, *rows = lines
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise InputError(f"row {number} has {len(row)} cells, the header {len(header)}",
                             str(path), fix)

    def cell(text: str) -> float | str:
        try:
            value = float(text)
        except ValueError:
            return text
        if not math.isfinite(value):
            raise InputError(f"a cell holds {text!r}, not a finite number", str(path), fix)
        return value
    return {name: [cell(r[i]) for r in rows] for i, name in enumerate(header)}


def throughput(run: ConsoleRun) -> Table:
    """`<run>_throughput.tsv`: row 0 = 0, row k = generation rate of bin (k-1, k]."""
    rows = [(0, 0.0)] + [(k, gen) for k, (_, gen) in enumerate(run.throughput, start=1)]
    return ("time_s", "throughput"), rows


def latency(run: ConsoleRun) -> Table:
    """`<run>_latency.tsv`: generation throughput and the mean over instances of their means."""
    def mean_of(stat: str) -> float:
        values = [m[stat] for m in run.instance_means_ms.values() if stat in m]
        return statistics.fmean(values) if values else 0.0
    row = (run.generation_throughput, mean_of("TTFT"), mean_of("TPOT"), mean_of("ITL"))
    return ("throughput_tok_s", "mean_ttft_ms", "mean_tpot_ms", "mean_itl_ms"), [row]


def sim_time(run: ConsoleRun) -> Table:
    """`<run>_sim_time.tsv`: the printed host wall time of the simulation."""
    return ("simulation_time_s",), [(run.sim_time_s or 0.0,)]


def power(run: ConsoleRun) -> Table:
    """`power_tp<N>.tsv`: row k = (k+1)-th power sample (no leading zero)."""
    return ("time_s", "power_w"), list(enumerate(run.power_w or []))


def component_energy(runs: dict[str, ConsoleRun]) -> Table:
    """`component_energy.tsv`: one J column per run, components in the artifact's order."""
    rows = [(label, *(round(r.energy_j.get(name, 0.0), 2) for r in runs.values()))
            for name, label in ENERGY_COMPONENTS]
    return ("component", *runs), rows


def energy_per_token(runs: dict[str, ConsoleRun]) -> Table:
    """`energy_per_token.tsv`: printed total kJ x 1000 / generated tokens, per run."""
    row = tuple((r.total_energy_kj or 0.0) * 1000 / max(1, r.generated_tokens)
                for r in runs.values())
    return tuple(runs), [row]


def _at(ticks: dict[float, dict[int, float]], t: float, key: int) -> float:
    return ticks.get(t, {}).get(key, 0.0)


def prefix_single(run: ConsoleRun) -> Table:
    """Figure 7 `SD+PC.tsv`: row k = memory of heartbeat k+2 and hit ratio of heartbeat k+1."""
    mem = {t.time_s: t.npu_mem_mb for t in run.ticks}
    hit = {t.time_s: t.npu_hit_pct for t in run.ticks}
    rows = [(k, _at(mem, k + 2.0, 0), _at(hit, k + 1.0, 0))
            for k in range(len(run.ticks) - 1)]
    return ("time_s", "gpu_mem_mb", "prefix_hit_pct"), rows


def prefix_multi(run: ConsoleRun, instance: int) -> Table:
    """Figure 7 `MD+PC+PS_inst<i>.tsv`: row k = heartbeat k+2 (the first one is dropped)."""
    rows = [(k, t.npu_mem_mb.get(instance, 0.0), t.npu_hit_pct.get(instance, 0.0))
            for k, t in enumerate(run.ticks[1:])]
    return ("time_s", "gpu_mem_mb", "prefix_hit_pct"), rows


def prefix_shared_cpu(run: ConsoleRun) -> Table:
    """Figure 7 `MD+PC+PS_shared_cpu.tsv`: node 0's pool, row k = heartbeat k+2."""
    rows = [(k, t.cpu_mem_mb.get(0, 0.0), t.cpu_hit_pct.get(0, 0.0))
            for k, t in enumerate(run.ticks[1:])]
    return ("time_s", "shared_cpu_mem_mb", "shared_cpu_prefix_hit_pct"), rows


def _needs_power(run: ConsoleRun) -> str:
    return "" if run.power_w is not None else "power/energy model (no `Power per 1.0 sec (W)` line)"


def per_run_tables(kind: str, name: str, run: ConsoleRun) -> tuple[dict[str, Table], str]:
    """TSVs of one series kind for run `name`: ({file name: table}, missing-feature or "")."""
    if kind == "power":
        return ({f"{name}.tsv": power(run)}, "") if not _needs_power(run) else \
            ({}, _needs_power(run))
    if kind == "prefix_single":
        return {f"{name}.tsv": prefix_single(run)}, ""
    if kind == "prefix_multi":
        return {f"{name}_inst0.tsv": prefix_multi(run, 0), f"{name}_inst1.tsv":
                prefix_multi(run, 1), f"{name}_shared_cpu.tsv": prefix_shared_cpu(run)}, ""
    derive = {"throughput": throughput, "latency": latency, "sim_time": sim_time}[kind]
    return {f"{name}_{kind}.tsv": derive(run)}, ""


def per_figure_table(kind: str, runs: dict[str, ConsoleRun]) -> tuple[dict[str, Table], str]:
    """A figure-wide TSV over labelled runs: ({file name: table}, missing-feature or "")."""
    missing = next((m for r in runs.values() if (m := _needs_power(r))), "")
    if missing or not runs:
        return {}, missing
    derive = {"component_energy": component_energy, "energy_per_token": energy_per_token}[kind]
    return {f"{kind}.tsv": derive(runs)}, ""
