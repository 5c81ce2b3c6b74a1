"""Device-memory use per instance: sampled at every log window, reported in the summary.

The periodic block already prints each instance's `Each NPU Memory Usage` (weights + KV in
use). This module keeps the same figures per window for `--metrics-json` and the API's
`Results` (`instances.<i>.device_memory`), and prints a device-memory block in the final
summary when weights are placed off the device or device reads are timed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inference_serving.observers import Observer

if TYPE_CHECKING:
    from inference_serving.instance import Instance

MIB = 1 << 20
LABEL_WIDTH = 68


class MemorySeries(Observer):
    """Samples every instance's KV in use (blocks) when a log window closes."""

    def __init__(self, instances: list[Instance]) -> None:
        self.instances = instances

    def on_window(self, time_ns: int, rates: tuple[float, float]) -> None:
        """Record the KV blocks each instance holds at the window's end."""
        for inst in self.instances:
            inst.kv_samples.append(inst.kv.used_blocks)


def memory_numbers(inst: Instance) -> dict:
    """One instance's device memory per NPU: capacity, resident weights, KV in use per window
    (bytes) and its peak over the windows."""
    block = inst.budget.block_bytes
    kv = [n * block for n in inst.kv_samples]
    return {"capacity_bytes": inst.spec.npu_mem.size_bytes,
            "weight_bytes": inst.budget.weight_bytes,
            "kv_capacity_bytes": inst.kv.num_blocks * block,
            "kv_bytes_per_window": kv,
            "peak_kv_bytes": max(kv, default=0)}


def memory_section(instances: list[Instance]) -> list[str]:
    """The summary's device-memory block (empty unless some instance places weights off the
    device or times device reads)."""
    if not any(i.spec.placement is not None or i.fabric.local_offloading for i in instances):
        return []
    lines = ["Device Memory Results".center(80), "-" * 80]
    for inst in instances:
        n = memory_numbers(inst)
        peak = n["weight_bytes"] + n["peak_kv_bytes"]
        for label, value in (
                (f"Weights per NPU of instance {inst.index} (MB):", n["weight_bytes"] / MIB),
                (f"KV cache capacity per NPU of instance {inst.index} (MB):",
                 n["kv_capacity_bytes"] / MIB),
                (f"Peak KV cache in use per NPU of instance {inst.index} (MB):",
                 n["peak_kv_bytes"] / MIB),
                (f"Peak memory usage per NPU of instance {inst.index} (%):",
                 peak / n["capacity_bytes"] * 100)):
            lines.append(f"{label:<{LABEL_WIDTH}}{value:.2f}")
    return [*lines, "-" * 80]
