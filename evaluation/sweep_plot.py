"""The sweep's Pareto plot: goodput per GPU against a p99 latency, one series per
configuration, the Pareto front (lower latency, higher goodput per GPU) and the SLO line."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from typing import Any

from llmsim_core.atomic_write import write_atomic
from llmsim_core.errors import InputError

LABELS = {"ttft": "TTFT", "tpot": "TPOT", "itl": "ITL", "e2e": "end-to-end latency"}


def require_matplotlib() -> None:
    """An InputError unless matplotlib (the `[plot]` extra) can be imported."""
    if importlib.util.find_spec("matplotlib") is None:
        raise InputError("matplotlib is not installed", "the sweep's Pareto plot",
                         "pip install 'llmservingsim-py[plot]' (in a checkout: ./compile.sh "
                         "plot), or pass --no-plot")


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both x (lower) and y (higher), by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def plot_points(rows: list[dict[str, Any]], latency: str) -> list[tuple[str, float, float, float]]:
    """(configuration, rate, p99 latency ms, goodput per GPU) of every row with a latency."""
    key = f"{latency}_p99_ms"
    return [(r["config"], r["rate_req_s"], r[key], r["goodput_per_gpu"]) for r in rows
            if r[key] is not None]


def draw_pareto(rows: list[dict[str, Any]], latency: str, slo_ms: float | None,
                path: Path) -> None:
    """Write the plot as PNG to `path`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = plot_points(rows, latency)
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    names = list(dict.fromkeys(d[0] for d in data))
    markers = "osD^vP*Xh<>"
    for k, name in enumerate(names):
        mine = sorted((d for d in data if d[0] == name), key=lambda d: d[1])
        ax.plot([d[2] for d in mine], [d[3] for d in mine], marker=markers[k % len(markers)],
                linewidth=1, label=name)
        for _, rate, x, y in mine:
            ax.annotate(f"{rate:g}", (x, y), textcoords="offset points", xytext=(4, 3),
                        fontsize=7, color="0.35")
    front = [data[i] for i in pareto_front([(d[2], d[3]) for d in data])]
    if front:
        ax.step([d[2] for d in front], [d[3] for d in front], where="post", color="black",
                linestyle="--", linewidth=1, label="Pareto front")
    if slo_ms is not None:
        ax.axvline(slo_ms, color="tab:red", linewidth=1, label=f"SLO {slo_ms:g} ms")
    ax.set_xscale("log")
    ax.set_xlabel(f"p99 {LABELS[latency]} (ms, log scale)")
    ax.set_ylabel("goodput per GPU (req/s)")
    ax.set_title("Goodput per GPU vs p99 latency (labels: arrival rate, req/s)", fontsize=10)
    ax.grid(True, which="both", linewidth=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    write_atomic(path, buf.getvalue())
