"""`--plot-dir`: PNG plots of a run, drawn from series collected by an observer.

Series: throughput per log window, TTFT / TPOT / E2E distributions (from the fleet samples),
running and waiting requests and device memory per instance sampled at every log tick, and
(when power is modelled) the power of every node and of the cluster per log window.
The charts are drawn with Pillow (`chart.py`), imported only when the plots are drawn.
"""

from __future__ import annotations

import importlib.util
from array import array
from pathlib import Path

import numpy as np

from inference_serving.fleet import FleetSamples
from inference_serving.instance import Instance
from inference_serving.observers import Observer
from inference_serving.output_paths import POWER_PLOT
from inference_serving.power import PowerReport
from inference_serving.simulator import SimResult
from llmsim_core.atomic_write import write_atomic
from llmsim_core.errors import InputError

MIB = 1 << 20


def require_plotting() -> None:
    """An InputError unless Pillow can be imported (the `[plot]` extra)."""
    if importlib.util.find_spec("PIL") is None:
        raise InputError("Pillow is not installed", "--plot-dir",
                         "pip install 'llmservingsim-py[plot]' (in a checkout: ./compile.sh plot)")


def cdf(samples_ns: array) -> tuple[np.ndarray, np.ndarray]:
    """Sorted values in ms and the fraction of samples at or below each."""
    ms = np.sort(np.frombuffer(samples_ns, dtype=np.int64)) / 1e6
    return ms, np.arange(1, ms.size + 1) / max(ms.size, 1)


class PlotData(Observer):
    """Collects the plotted series; draws the PNGs into `folder` when the run ends."""

    def __init__(self, folder: Path, instances: list[Instance], fleet: FleetSamples) -> None:
        self.folder = folder
        self.instances = instances
        self.fleet = fleet
        self.times_s = array("d")
        self.prompt_tok_s = array("d")
        self.generation_tok_s = array("d")
        # One column per instance, one row per log tick (flattened).
        self.running = array("q")
        self.waiting = array("q")
        self.memory = array("q")

    def on_window(self, time_ns: int, rates: tuple[float, float]) -> None:
        """Sample throughput, queue lengths and device memory at the log tick."""
        self.times_s.append(time_ns / 1e9)
        self.prompt_tok_s.append(rates[0])
        self.generation_tok_s.append(rates[1])
        for inst in self.instances:
            running = sum(len(b.requests) for b in inst.in_flight)
            self.running.append(running)
            self.waiting.append(inst.scheduler.num_requests() - running)
            self.memory.append(inst.memory_used_bytes())

    def per_instance(self, series: array) -> np.ndarray:
        """A sampled series as a (ticks, instances) matrix."""
        return np.array(series, dtype=np.int64).reshape(len(self.times_s), len(self.instances))

    def on_finish(self, result: SimResult) -> None:
        """Write every PNG."""
        for name, png in charts(self, result.power).items():
            write_atomic(self.folder / name, png)


def charts(data: PlotData, power: PowerReport | None = None) -> dict[str, bytes]:
    """The PNG bytes of every file of PLOT_FILES, and of POWER_PLOT when `power` is given."""
    from inference_serving.chart import Series, line_chart

    times = data.times_s.tolist()
    out = {"throughput.png": line_chart(
        "Throughput per log window", "simulated time (s)", "tokens/s",
        [Series(times, data.prompt_tok_s.tolist(), "prompt", 0),
         Series(times, data.generation_tok_s.tolist(), "generation", 1)])}
    for key, title in (("ttft", "TTFT"), ("tpot", "TPOT"), ("e2e", "End-to-end latency")):
        values, fractions = cdf(data.fleet.samples[key])
        out[f"{key}_cdf.png"] = line_chart(
            f"{title} CDF ({values.size} requests)", "ms", "fraction of requests",
            [Series(values.tolist(), fractions.tolist(), steps=True)])
    running, waiting = data.per_instance(data.running), data.per_instance(data.waiting)
    lines = []
    for k, inst in enumerate(data.instances):
        lines.append(Series(times, running[:, k].tolist(), f"instance {inst.index} running", k))
        lines.append(Series(times, waiting[:, k].tolist(), f"instance {inst.index} waiting", k,
                            dashed=True))
    out["requests.png"] = line_chart("Requests per instance", "simulated time (s)",
                                     "requests", lines)
    memory = data.per_instance(data.memory) / MIB
    out["memory.png"] = line_chart(
        "Device memory per NPU", "simulated time (s)", "MiB",
        [Series(times, memory[:, k].tolist(), f"instance {inst.index}", k)
         for k, inst in enumerate(data.instances)])
    if power is not None:
        times = [(k + 1) * power.interval_s for k in range(len(power.windows_w))]
        nodes = [Series(times, watts, f"node {n}", k + 1)
                 for k, (n, watts) in enumerate(power.node_windows_w.items())]
        out[POWER_PLOT] = line_chart(
            "Power per log window", "simulated time (s)", "W",
            [Series(times, list(power.windows_w), "cluster", 0),
             *(nodes if len(nodes) > 1 else [])])
    return out
