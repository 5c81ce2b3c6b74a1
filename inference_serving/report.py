"""Console text: the periodic status block, the final summary (formats.md §6.2–6.4) and the
progress line, each printed by an observer."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from inference_serving.fleet import FleetSamples
from inference_serving.instance import Instance
from inference_serving.kv_report import (
    cxl_lines,
    host_bytes,
    instance_suffix,
    kv_numbers,
    shared_cpu_pool,
    summary_lines,
)
from inference_serving.memory_report import memory_numbers, memory_section
from inference_serving.metrics import InstanceStats, LatencyStats
from inference_serving.observers import Observer
from inference_serving.request import Request
from inference_serving.scheduler.base import Batch
from inference_serving.simulator import SimResult

if TYPE_CHECKING:
    from inference_serving.power import PowerMeter

BAR = "-" * 80
MIB = 1 << 20
LABEL_WIDTH = 68


def _line(label: str, value: object) -> str:
    return f"{label:<{LABEL_WIDTH}}{value}"


def periodic_block(time_s: float, rates: tuple[float, float], instances: list[Instance],
                   nodes: dict[int, int], power_w: float | None = None,
                   cxl_capacity: int = 0) -> str:
    """Status block for the window ending at `time_s` (formats.md §6.3); `nodes` maps node
    ids to host-memory capacity in bytes; `power_w` is the window's power, if modelled;
    `cxl_capacity` is the CXL pool's."""
    label = f"[{time_s:.1f}s]"
    lines = [f"{label} Avg prompt throughput: {rates[0]:.1f} tokens/s, "
             f"Avg generation throughput: {rates[1]:.1f} tokens/s"]
    tree = []
    for inst in instances:
        used = inst.memory_used_bytes()
        cap = inst.spec.npu_mem.size_bytes
        tree.append(f"Running Instance[{inst.index}]: {inst.scheduler.num_requests()} reqs, "
                    f"Total # {inst.spec.npu_num} NPUs, Each NPU Memory Usage "
                    f"{used / MIB:.2f} MB ({used / cap * 100:.3f} % Used)" + instance_suffix(inst))
    for node_id, host_size in nodes.items():
        on_node = [i for i in instances if i.spec.node_id == node_id]
        pool = shared_cpu_pool(instances, node_id)
        used = sum(host_bytes(i) for i in on_node) + (pool.used_bytes if pool else 0)
        line = (f"Node[{node_id}]: Total CPU Memory Usage {used / MIB:.2f} MB, "
                f"{used / host_size * 100:.3f} % Used ")
        if pool is not None:
            line += (f", Prefix Cache Hit ratio {pool.hit_ratio:.2f} %, "
                     f"({pool.hits} / {pool.requested})")
        elif len(on_node) > 1:
            shares = (host_bytes(i) / used * 100 if used else 0.0 for i in on_node)
            line += "(" + ", ".join(f"Instance[{i.index}]: {share:.2f} %"
                                    for i, share in zip(on_node, shares, strict=True)) + ")"
        tree.append(line)
    tree += cxl_lines(instances, cxl_capacity)
    if power_w is not None:
        tree.append(f"Avg power consumption: {power_w} W")
    pad = " " * (len(label) + 2)
    for k, text in enumerate(tree):
        glyph = "└─" if k == len(tree) - 1 else "├─"
        lines.append(f"{pad}{glyph}{text}")
    return "\n".join(lines)


def _stats_section(title: str, metric: str, stats: LatencyStats | None) -> list[str]:
    lines = [title.center(80, "-")]
    if stats is None:
        return [*lines, f"No {metric} data available"]
    return [*lines,
            _line(f"Mean {metric} (ms):", f"{stats.mean:.2f}"),
            _line(f"Median {metric} (ms):", f"{stats.median:.2f}"),
            _line(f"P99 {metric} (ms):", f"{stats.p99:.2f}")]


def _instance_section(index: int, stats: InstanceStats) -> list[str]:
    return [f"Instance [{index}]".center(80), BAR,
            *_stats_section("Time to First Token", "TTFT", stats.ttft),
            *_stats_section("Time per Output Token (excl. 1st token)", "TPOT", stats.tpot),
            *_stats_section("Inter-token Latency", "ITL", stats.itl),
            BAR]


def served_stats(inst: Instance, fleet: FleetSamples) -> InstanceStats:
    """An instance's statistics; a P/D prefill instance reports none, as the existing simulator
    prints (formats.md §6.4), even when one-token requests finished on it."""
    if inst.spec.pd_type == "prefill":
        return InstanceStats(None, None, None)
    return fleet.instance_stats(inst.index)


FLEET_ROWS = (("TTFT", "ttft"), ("TPOT", "tpot"), ("ITL", "itl"), ("E2E latency", "e2e"),
              ("Queueing delay", "queueing"))


def _fleet_section(fleet: dict) -> list[str]:
    """All instances' requests pooled; labels avoid the per-instance parsers' `Mean TTFT`."""
    lines = ["Fleet (all instances, each request once)".center(80), BAR,
             _line("Fleet requests:", fleet["requests"])]
    for title, key in FLEET_ROWS:
        stats = fleet[key]
        if stats is None:
            lines.append(f"No fleet {title} data available")
            continue
        lines += [_line(f"{title} {name} (ms):", f"{stats[key_ms]:.2f}")
                  for name, key_ms in (("mean", "mean_ms"), ("median", "median_ms"),
                                       ("P90", "p90_ms"), ("P99", "p99_ms"))]
    slo = fleet["slo"]
    if slo is not None:
        given = ", ".join(f"{name} <= {slo[key]:g} ms" for name, key in
                          (("TTFT", "ttft_ms"), ("TPOT", "tpot_ms"), ("E2E", "e2e_ms"))
                          if slo[key] is not None)
        lines += [_line("SLO:", given),
                  _line("SLO attainment (%):", f"{fleet['slo_attainment_pct']:.2f}"),
                  _line("Goodput (req/s):", f"{fleet['goodput_req_s']:.2f}")]
    return [*lines, BAR]


def _clock(seconds: float) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{int(hours)}h {int(minutes)}m {secs:.3f}s"


def summary_numbers(result: SimResult, fleet: FleetSamples,
                    stats: dict[int, InstanceStats] | None = None) -> dict:
    """The summary's figures, also used for --metrics-json, with the pooled fleet block;
    `stats` are the instances' statistics when the caller has them already."""
    # Under P/D a one-token request completes on its prefill instance; it still counts.
    served = sum(inst.completed for inst in result.instances)
    seconds = result.end_ns / 1e9 if result.end_ns else 1.0
    c = result.counters
    numbers = {
        "total_requests": served,
        "total_clocks_ns": result.end_ns,
        "total_latency_s": round(result.end_ns / 1e9, 3),
        "total_input_tokens": c.total_prompt,
        "total_generated_tokens": c.total_generated,
        "request_throughput_req_s": served / seconds,
        "prompt_throughput_tok_s": c.total_prompt / seconds,
        "generation_throughput_tok_s": c.total_generated / seconds,
        "total_token_throughput_tok_s": (c.total_prompt + c.total_generated) / seconds,
        "iterations": result.iterations,
        "instances": {},
    }
    for inst in result.instances:
        own = stats[inst.index] if stats is not None else served_stats(inst, fleet)
        numbers["instances"][str(inst.index)] = {
            name: None if s is None else {"mean_ms": s.mean, "median_ms": s.median,
                                          "p99_ms": s.p99}
            for name, s in (("ttft", own.ttft), ("tpot", own.tpot), ("itl", own.itl))
        }
        numbers["instances"][str(inst.index)]["completed"] = inst.completed
        numbers["instances"][str(inst.index)]["device_memory"] = memory_numbers(inst)
        if inst.kv_series is not None:
            numbers["instances"][str(inst.index)].update(kv=kv_numbers(inst),
                                                         kv_series=inst.kv_series)
    numbers["fleet"] = fleet.numbers(seconds)
    if result.power is not None:
        numbers["power"] = result.power.numbers()
    return numbers


def final_summary(result: SimResult, wall_s: float, interval_s: float,
                  output: str | None, fleet: FleetSamples) -> str:
    """The end-of-run summary (formats.md §6.4), then the fleet block."""
    stats = {inst.index: served_stats(inst, fleet) for inst in result.instances}
    n = summary_numbers(result, fleet, stats)
    lines = [BAR, "▶ Simulation results...", "", f"Total simulation time: {_clock(wall_s)}", BAR,
             "Throughput Results".center(80), BAR,
             _line("Total requests:", n["total_requests"]),
             _line("Total clocks (ns):", n["total_clocks_ns"]),
             _line("Total latency (s):", f"{result.end_ns / 1e9:.3f}"),
             _line("Total input tokens:", n["total_input_tokens"]),
             _line("Total generated tokens:", n["total_generated_tokens"]),
             _line("Request throughput (req/s):", f"{n['request_throughput_req_s']:.2f}"),
             _line("Average prompt throughput (tok/s):", f"{n['prompt_throughput_tok_s']:.2f}"),
             _line("Average generation throughput (tok/s):",
                   f"{n['generation_throughput_tok_s']:.2f}"),
             _line("Total token throughput (tok/s):",
                   f"{n['total_token_throughput_tok_s']:.2f}"),
             f"Throughput per {float(interval_s)} sec: {result.counters.windows_text()}",
             BAR, *summary_lines(result.instances)]
    if result.power is not None:
        lines += result.power.summary_lines()
    for inst in result.instances:
        lines += _instance_section(inst.index, stats[inst.index])
    lines += memory_section(result.instances)
    lines += _fleet_section(n["fleet"])
    if output:
        lines.append(f"Saving each request's information to output file: {output}")
    return "\n".join(lines)


class PeriodicBlocks(Observer):
    """Prints the status block of every closed log window on stdout; `power` (set when power
    is modelled) is the meter whose latest window power the block shows."""

    def __init__(self, instances: list[Instance], host_sizes: dict[int, int],
                 cxl_capacity: int = 0) -> None:
        self.instances = instances
        self.host_sizes = host_sizes
        self.cxl_capacity = cxl_capacity
        self.power: PowerMeter | None = None

    def on_window(self, time_ns: int, rates: tuple[float, float]) -> None:
        """Print the block for the window ending at `time_ns`."""
        power_w = self.power.windows_w[-1] if self.power is not None else None
        print(periodic_block(time_ns / 1e9, rates, self.instances, self.host_sizes, power_w,
                             self.cxl_capacity), flush=False)


class FinalSummary(Observer):
    """Prints the end-of-run summary on stdout; wall time counts from construction."""

    def __init__(self, interval_s: float, output: str | None, fleet: FleetSamples) -> None:
        self.interval_s = interval_s
        self.output = output
        self.fleet = fleet
        self.started = time.perf_counter()

    def on_finish(self, result: SimResult) -> None:
        """Print the summary."""
        print(final_summary(result, time.perf_counter() - self.started, self.interval_s,
                            self.output, self.fleet))


class ProgressLine(Observer):
    """A progress line on stderr, redrawn every 256 iterations and cleared before each status
    block so the two never share a terminal line (only use it when stderr is a terminal)."""

    EVERY = 256

    def __init__(self, total: int) -> None:
        self.total = total
        self.finished = 0
        self.iterations = 0
        self.width = 0

    def on_batch_end(self, inst: Instance, batch: Batch, end_ns: int,
                     finished: list[Request]) -> None:
        """Count progress; redraw every EVERY iterations."""
        self.finished += len(finished)
        self.iterations += 1
        if self.iterations % self.EVERY == 1:
            line = f"  {end_ns / 1e9:10.3f} s simulated, {self.finished}/{self.total} " \
                   "requests finished"
            self.width = len(line)
            sys.stdout.flush()  # blocks already printed must reach the terminal first
            print(f"\r{line}", end="", file=sys.stderr, flush=True)

    def on_window(self, time_ns: int, rates: tuple[float, float]) -> None:
        """Clear the line before the status block is printed."""
        self.clear()

    def on_finish(self, result: SimResult) -> None:
        """Clear the line before the summary is printed."""
        self.clear()

    def clear(self) -> None:
        """Erase the drawn line, if any."""
        if self.width:
            print("\r" + " " * self.width + "\r", end="", file=sys.stderr, flush=True)
            self.width = 0
