"""KV-cache figures of the instances — prefix hits per tier, cached prefix blocks, CPU/CXL tier
use, bytes recalled and swapped: the additions to the status block and the summary
(formats.md §6.3–6.4) and the per-window series of `--metrics-json` and the API's `Results`
(`instances.<i>.kv`, `instances.<i>.kv_series`)."""

from __future__ import annotations

from inference_serving.instance import Instance
from inference_serving.kv import PrefixTier
from inference_serving.observers import Observer
from llmsim_core.iteration_plan import HOST

MIB = 1 << 20
LABEL_WIDTH = 68


def _line(label: str, value: object) -> str:
    return f"{label:<{LABEL_WIDTH}}{value}"


def _ratio(hits: int, requested: int) -> float:
    return hits / requested * 100 if requested else 0.0


def instance_suffix(inst: Instance) -> str:
    """`, Prefix Cache Hit ratio h %, (hit / requested), Cached prefix M MB` once the instance
    has seen a prefill with prefix caching on; else nothing."""
    kv = inst.kv
    stats = kv.stats
    if not kv.prefix_caching or not stats.requested:
        return ""
    cached = kv.cached_blocks * kv.block_bytes / MIB
    return (f", Prefix Cache Hit ratio {_ratio(stats.device_hits, stats.requested):.2f} %, "
            f"({stats.device_hits} / {stats.requested}), Cached prefix {cached:.2f} MB")


def host_bytes(inst: Instance) -> int:
    """CPU memory one instance holds on its node: swapped-out KV (when swapping to CPU) and its
    own (unshared) CPU prefix store."""
    kv = inst.kv
    used = inst.scheduler.host_bytes if kv.swap is None or kv.swap.target == HOST else 0
    tier = kv.tier
    if tier is not None and tier.name == "CPU" and not tier.shared:
        used += tier.used_bytes
    return used


def tiers_of(instances: list[Instance]) -> list[PrefixTier]:
    """Every distinct second-tier store, in instance order."""
    seen: dict[int, PrefixTier] = {}
    for inst in instances:
        tier = inst.kv.tier
        if tier is not None:
            seen.setdefault(id(tier), tier)
    return list(seen.values())


def shared_cpu_pool(instances: list[Instance], node: int) -> PrefixTier | None:
    """The shared CPU prefix pool of `node`, if any."""
    return next((t for t in tiers_of(instances)
                 if t.shared and t.name == "CPU" and t.index == node), None)


def cxl_lines(instances: list[Instance], capacity: int) -> list[str]:
    """`CXL[0]: Total CXL Device Memory Usage …` when a CXL prefix store or swap space is used."""
    tiers = [t for t in tiers_of(instances) if t.name == "CXL"]
    swapped = [i for i in instances if i.kv.swap is not None and i.kv.swap.target != HOST]
    if not tiers and not swapped or not capacity:
        return []
    used = sum(t.used_bytes for t in tiers) + sum(i.kv.swap.used_bytes for i in swapped)
    return [f"CXL[0]: Total CXL Device Memory Usage {used / MIB:.2f} MB, "
            f"{used / capacity * 100:.3f} % Used"]


def summary_lines(instances: list[Instance]) -> list[str]:
    """The `Prefix Caching Results` block (with prefix caching) and a `KV Offloading Results`
    block (when KV was swapped), each closed by a bar."""
    bar = "-" * 80
    lines: list[str] = []
    kvs = [inst.kv for inst in instances]
    if any(kv.prefix_caching for kv in kvs):
        requested = sum(kv.stats.requested for kv in kvs)
        device = sum(kv.stats.device_hits for kv in kvs)
        lower = sum(kv.stats.tier_hits for kv in kvs)
        lines += ["Prefix Caching Results".center(80), bar,
                  _line("Total requested prompt tokens:", requested),
                  _line("NPU prefix hit prompt tokens:", device),
                  _line("NPU prefix hit ratio (%):", f"{_ratio(device, requested):.2f}")]
        tiers = tiers_of(instances)
        if tiers:
            name = tiers[0].name
            lines += [_line(f"{name} prefix hit prompt tokens:", lower),
                      _line(f"{name} prefix hit ratio (%):", f"{_ratio(lower, requested):.2f}"),
                      _line(f"{name} prefix recalled bytes (per NPU):",
                            sum(kv.stats.recalled_bytes for kv in kvs))]
        lines += [_line("Total prefix hit ratio (%):",
                        f"{_ratio(device + lower, requested):.2f}"), bar]
    swaps = [kv.swap for kv in kvs if kv.swap is not None]
    if any(s.out_bytes for s in swaps):
        lines += ["KV Offloading Results".center(80), bar,
                  _line("Swapped-out KV bytes (per NPU):", sum(s.out_bytes for s in swaps)),
                  _line("Swapped-in KV bytes (per NPU):", sum(s.in_bytes for s in swaps)), bar]
    return lines


def kv_numbers(inst: Instance) -> dict:
    """One instance's KV memory, prefix and offloading figures now (MB = MiB, per NPU)."""
    kv = inst.kv
    numbers = {"device_memory_mb": inst.memory_used_bytes() / MIB,
               "kv_in_use_mb": kv.used_blocks * kv.block_bytes / MIB,
               "cached_prefix_mb": kv.cached_blocks * kv.block_bytes / MIB}
    if kv.prefix_caching:
        stats = kv.stats
        numbers.update(prefix_requested_tokens=stats.requested,
                       npu_prefix_hit_tokens=stats.device_hits,
                       npu_prefix_hit_pct=_ratio(stats.device_hits, stats.requested),
                       tier_prefix_hit_tokens=stats.tier_hits,
                       tier_prefix_hit_pct=_ratio(stats.tier_hits, stats.requested),
                       recalled_bytes=stats.recalled_bytes)
    tier = kv.tier
    if tier is not None:
        numbers.update(tier=f"{tier.name}[{tier.index}]", tier_shared=tier.shared,
                       tier_used_mb=tier.used_bytes / MIB, tier_hit_pct=tier.hit_ratio)
    if kv.swap is not None:
        numbers.update(swap_used_mb=kv.swap.used_bytes / MIB,
                       swapped_out_bytes=kv.swap.out_bytes, swapped_in_bytes=kv.swap.in_bytes)
    return numbers


class KvSeries(Observer):
    """Keeps every instance's `kv_numbers` at the end of each log window in its `kv_series`
    (which the summary numbers then carry)."""

    def __init__(self, instances: list[Instance]) -> None:
        self.instances = instances
        for inst in instances:
            inst.kv_series = []

    def on_window(self, time_ns: int, rates: tuple[float, float]) -> None:
        """Record the window."""
        for inst in self.instances:
            inst.kv_series.append({"time_s": time_ns / 1e9, **kv_numbers(inst)})
