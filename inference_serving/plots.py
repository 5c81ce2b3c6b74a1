"""`--plot-dir`: PNG plots of a run, drawn from series collected by an observer.

Series: throughput per log window, TTFT / TPOT / E2E distributions (from the fleet samples),
running and waiting requests and device memory per instance sampled at every log tick.
matplotlib is imported only when the plots are drawn.
"""

from __future__ import annotations

import importlib.util
import io
from array import array
from pathlib import Path

import numpy as np

from inference_serving.fleet import FleetSamples
from inference_serving.instance import Instance
from inference_serving.observers import Observer
from inference_serving.simulator import SimResult
from llmsim_core.atomic_write import write_atomic
from llmsim_core.errors import InputError

MIB = 1 << 20
PLOT_FILES = ("throughput.png", "ttft_cdf.png", "tpot_cdf.png", "e2e_cdf.png", "requests.png",
              "memory.png")


def require_matplotlib() -> None:
    """An InputError unless matplotlib can be imported (the `[plot]` extra)."""
    if importlib.util.find_spec("matplotlib") is None:
        raise InputError("matplotlib is not installed", "--plot-dir",
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
        """Draw every plot."""
        draw(self, self.folder)


def _save(fig: object, path: Path) -> None:
    """Write atomically; no software tag, so equal runs give equal bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    write_atomic(path, buffer.getvalue())


def draw(data: PlotData, folder: Path) -> None:
    """Render PLOT_FILES into `folder`."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    def figure(title: str, xlabel: str, ylabel: str) -> tuple:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        return fig, ax

    def finish(fig: object, ax: object, name: str) -> None:
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        fig.tight_layout()
        _save(fig, folder / name)
        plt.close(fig)

    fig, ax = figure("Throughput per log window", "simulated time (s)", "tokens/s")
    ax.plot(data.times_s, data.prompt_tok_s, label="prompt")
    ax.plot(data.times_s, data.generation_tok_s, label="generation")
    finish(fig, ax, "throughput.png")
    for key, title in (("ttft", "TTFT"), ("tpot", "TPOT"), ("e2e", "End-to-end latency")):
        fig, ax = figure(f"{title} CDF ({data.fleet.requests} requests)", "ms",
                         "fraction of requests")
        values, fractions = cdf(data.fleet.samples[key])
        ax.step(values, fractions, where="post")
        finish(fig, ax, f"{key}_cdf.png")
    fig, ax = figure("Requests per instance", "simulated time (s)", "requests")
    running, waiting = data.per_instance(data.running), data.per_instance(data.waiting)
    for k, inst in enumerate(data.instances):
        line = ax.plot(data.times_s, running[:, k], label=f"instance {inst.index} running")[0]
        ax.plot(data.times_s, waiting[:, k], linestyle="--", color=line.get_color(),
                label=f"instance {inst.index} waiting")
    finish(fig, ax, "requests.png")
    fig, ax = figure("Device memory per NPU", "simulated time (s)", "MiB")
    memory = data.per_instance(data.memory) / MIB
    for k, inst in enumerate(data.instances):
        ax.plot(data.times_s, memory[:, k], label=f"instance {inst.index}")
    finish(fig, ax, "memory.png")
