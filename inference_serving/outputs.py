"""Atomic writers for the per-request CSV, the throughput series and the metrics JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable

from inference_serving.request import Request

CSV_COLUMNS = ("instance id", "request id", "model", "input", "output", "arrival", "end_time",
               "latency", "queuing_delay", "TTFT", "TPOT", "ITL")


def request_csv(rows: Iterable[tuple[Request, str]]) -> str:
    """Per-request CSV text (formats.md §6.1) for (request, model name) pairs in output order."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r, model in rows:
        writer.writerow((r.instance, r.rid, model, r.prompt, r.prompt + r.output, r.arrival,
                         r.end, r.latency, r.first_scheduled - r.arrival, r.ttft, r.tpot,
                         "[" + ", ".join(map(str, r.itl)) + "]"))
    return buf.getvalue()


def throughput_csv(interval_s: float, windows: list[tuple[float, float]]) -> str:
    """Throughput time series: one row per periodic window, rates in tokens/s."""
    lines = ["time_s,prompt_tok_s,generation_tok_s"]
    for k, (prompt, gen) in enumerate(windows, start=1):
        lines.append(f"{k * interval_s:g},{prompt},{gen}")
    return "\n".join(lines) + "\n"


def metrics_json(summary: dict) -> str:
    """Machine-readable metrics, stable key order."""
    return json.dumps(summary, indent=2, sort_keys=True) + "\n"
