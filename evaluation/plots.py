"""Figure panels: the data each panel shows (testable without matplotlib) and the drawing."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

Columns = dict[str, list]


@dataclass(slots=True)
class Panel:
    """One subplot: lines (label -> (x, y)) over time, or grouped bars (label -> values)."""

    title: str
    ylabel: str
    lines: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)
    bars: dict[str, list[float]] = field(default_factory=dict)


def series_panels(title: str, sides: dict[str, Columns]) -> list[Panel]:
    """One line panel per value column of a time series; one line per side (ours, existing...)."""
    first = next(iter(sides.values()))
    return [Panel(f"{title}: {col}", col,
                  lines={side: (cols["time_s"], cols[col]) for side, cols in sides.items()
                         if col in cols})
            for col in first if col != "time_s"]


def table_panels(title: str, sides: dict[str, Columns]) -> list[Panel]:
    """One bar panel per value column of a summary table; a `framework` column adds its rows."""
    first = next(iter(sides.values()))
    keys = [str(k) for k in first.get("component", [""])]
    panels = []
    for col in first:
        if col in ("component", "framework"):
            continue
        bars: dict[str, list[float]] = {}
        for side, cols in sides.items():
            if col not in cols:
                continue
            names = cols.get("framework")
            if names is None:
                bars[side] = [float(v) for v in cols[col]]
            else:  # one bar per framework row; "X" = not supported
                for name, v in zip(names, cols[col], strict=True):
                    bars[f"{name}"] = [v if isinstance(v, float) else math.nan]
        panels.append(Panel(f"{title}: {col}", col, groups=keys, bars=bars))
    return panels


def draw(panels: list[Panel], title: str, stem: Path) -> list[Path]:
    """Draw panels in a grid; write `<stem>.png` and `<stem>.svg`."""
    import matplotlib
    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "llmservingsim"  # stable element ids: same bytes
    import matplotlib.pyplot as plt

    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        for label, (x, y) in panel.lines.items():
            ax.plot(x, y, label=label, linestyle="-" if label == "ours" else "--", linewidth=1.2)
        if panel.bars:
            width = 0.8 / len(panel.bars)
            for k, (label, values) in enumerate(panel.bars.items()):
                ax.bar([g + k * width for g in range(len(values))], values, width, label=label)
            ax.set_xticks([g + 0.4 - width / 2 for g in range(len(panel.groups))],
                          panel.groups, rotation=30, fontsize=7)
        else:
            ax.set_xlabel("time (s)")
        if panel.ylabel == "simulation_time_s":  # seconds vs hundreds of seconds
            ax.set_yscale("log")
        ax.set_title(panel.title, fontsize=8)
        ax.set_ylabel(panel.ylabel, fontsize=8)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    written = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for path in written:
        fig.savefig(path, **({"metadata": {"Date": None}} if path.suffix == ".svg" else {}))
    plt.close(fig)
    return written
