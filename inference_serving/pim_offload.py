"""PIM attention offload (serving.md §10): the nodes' PIM channels, channel placement of decode
attention, and the sub-batch split of sub-batch interleaving. No timing here."""

from __future__ import annotations

import heapq
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from inference_serving.cluster_config import GIB, ClusterConfig, InstanceSpec, MemorySpec
from inference_serving.pim_device import (
    FIT_SHAPE,
    INTERCEPT_KEY,
    SLOPE_KEY,
    PimDevice,
    load_pim_device,
)
from llmsim_core.errors import InputError
from llmsim_core.iteration_plan import PimWork
from llmsim_core.model_config import ModelConfig

CHANNEL_BITS = 20  # heap entries are load << CHANNEL_BITS | channel: one int compare each
# Channels per node: far beyond real hosts (128 GB of 1 GB HBM2 channels is 128) and inside
# the CHANNEL_BITS heap encoding.
MAX_CHANNELS = 65536


@dataclass(frozen=True, slots=True)
class PimSetup:
    """A node's PIM channels as one instance uses them.

    `split` S = min(channels, KV heads); `op_bytes` is one decode's transfer per op: one
    token's q, k, v and attention output for the rank, divided by S. `defects` reproduces the
    existing simulator's PIM defects (`CompatProfile.pim_defects`).
    """

    device: PimDevice
    channels: int
    split: int
    op_bytes: int
    interleave: bool = False
    defects: bool = False


def pim_setup(device: PimDevice, channels: int, model: ModelConfig, tp: int, fp: int,
              interleave: bool, defects: bool = False) -> PimSetup:
    """The setup of one instance on a node with `channels` PIM channels."""
    split = min(channels, model.num_kv_heads)
    per_token = (2 * model.q_dim // tp + 2 * model.kv_dim // tp) * fp
    return PimSetup(device, channels, split, per_token // split, interleave, defects)


def place(lengths: Sequence[int], setup: PimSetup, copies: int | None = None) -> PimWork:
    """Decodes sorted by context length (longest first), each placed S times (or `copies`),
    every time on the channel with the least accumulated length (lowest index on a tie); each
    op takes 1/S of the decode's fitted time."""
    ordered = sorted(lengths, reverse=True)
    split = setup.split
    copies = split if copies is None else copies
    if setup.channels % copies == 0:
        channels = _place_in_groups(ordered, setup.channels // copies, copies)
    else:
        channels = _place_one_by_one(ordered, setup.channels, copies)
    d = setup.device
    per_request = ((d.slope_ns_per_token * np.array(ordered, dtype=np.float64)
                    + d.intercept_ns) / split).astype(np.int64)
    ns = np.repeat(per_request, copies)
    totals = np.bincount(channels, weights=ns, minlength=setup.channels)
    counts = np.bincount(channels, minlength=setup.channels)
    used = np.flatnonzero(counts)
    return PimWork(channels, ns, setup.op_bytes, used,
                   np.rint(totals[used]).astype(np.int64), counts[used])


def _place_one_by_one(ordered: list[int], count: int, split: int) -> np.ndarray:
    heap = list(range(count))  # load 0 on every channel: already a heap
    picks: list[int] = []
    pick = picks.append
    replace_min = heapq.heapreplace
    for length in ordered:
        step = length << CHANNEL_BITS
        for _ in range(split):
            entry = heap[0]
            replace_min(heap, entry + step)
            pick(entry)
    return np.array(picks, dtype=np.int64) & ((1 << CHANNEL_BITS) - 1)


def _place_in_groups(ordered: list[int], groups: int, split: int) -> np.ndarray:
    """The same placement when S divides C: channels gS … gS+S−1 start equal and, taken
    lowest index first, always receive the same request together, so they keep equal loads;
    one pick per request on the least-loaded group gives the same channels."""
    heap = list(range(groups))
    picks: list[int] = []
    pick = picks.append
    replace_min = heapq.heapreplace
    for length in ordered:
        entry = heap[0]
        replace_min(heap, entry + (length << CHANNEL_BITS))
        pick(entry)
    first = (np.array(picks, dtype=np.int64) & ((1 << CHANNEL_BITS) - 1)) * split
    return (first[:, None] + np.arange(split, dtype=np.int64)).ravel()


def split_batch(loads: Sequence[int], arrivals: Sequence[int]) -> tuple[list[int], list[int]]:
    """Entry indices of the two sub-batches: heaviest first, each to the lighter sub-batch
    (the first on a tie), then each sub-batch in arrival order."""
    order = sorted(range(len(loads)), key=loads.__getitem__, reverse=True)  # stable
    parts: tuple[list[int], list[int]] = ([], [])
    weight = [0, 0]
    for i in order:
        k = 0 if weight[0] <= weight[1] else 1
        parts[k].append(i)
        weight[k] += loads[i]
    for part in parts:
        part.sort()
        part.sort(key=arrivals.__getitem__)  # stable: equal arrivals keep entry order
    return parts


def offload_cluster(cluster: ClusterConfig, root: Path,
                    note: Callable[[str], None] = lambda line: print(line, file=sys.stderr)
                    ) -> tuple[ClusterConfig, dict[int, tuple[PimDevice, int]]]:
    """The cluster with every node's host memory replaced by its PIM channels (bandwidth =
    channels × channel bandwidth, latency = CL × tCK), and each node's (device, channels);
    `note` receives the one-line warning about host mem_bw / mem_latency it replaces."""
    nodes = []
    devices: dict[int, tuple[PimDevice, int]] = {}
    for node in cluster.nodes:
        where = f"key 'nodes[{node.node_id}].cpu_mem.pim_config' in {cluster.path}"
        if node.pim_config is None:
            raise InputError("--enable-attn-offloading needs a PIM device on every node",
                             where, "add \"pim_config\": \"<device file base name>\" to the "
                             "node's cpu_mem or drop --enable-attn-offloading")
        device = load_pim_device(node.pim_config, root, where)
        channels = device.channels(node.cpu_mem.size_bytes)
        if channels < 1:
            raise InputError(f"cpu_mem.mem_size holds no {device.channel_bytes / GIB:g} GB "
                             f"channel of {device.name}", where,
                             "raise cpu_mem.mem_size or use a smaller PIM device")
        if channels > MAX_CHANNELS:
            raise InputError(f"cpu_mem.mem_size holds {channels} channels of {device.name}, "
                             f"more than the {MAX_CHANNELS} a node's placement covers", where,
                             "lower cpu_mem.mem_size or use a larger PIM device")
        mem = node.cpu_mem
        if mem.bw_bytes_per_ns:
            note(f"warning: nodes[{node.node_id}].cpu_mem mem_bw and mem_latency in "
                 f"{cluster.path} are replaced by the PIM channels' ({channels} × "
                 f"{device.channel_bw_gbps:g} GB/s, {device.latency_ns:g} ns)")
        host = MemorySpec(mem.size_bytes, channels * device.channel_bw_gbps, device.latency_ns)
        nodes.append(replace(node, cpu_mem=host))
        devices[node.node_id] = (device, channels)
    return replace(cluster, nodes=tuple(nodes)), devices


def check_offloadable(spec: InstanceSpec, model: ModelConfig, device: PimDevice,
                      interleave: bool, where: str) -> None:
    """Shapes this version offloads: one NPU per stage and stage count, heads the fit covers."""
    if spec.tp > 1 or spec.pp > 1:
        raise InputError("attention offloading supports one NPU per instance (TP 1, PP 1) in "
                         "this version", where, "use npu_num 1 or drop --enable-attn-offloading")
    if interleave and model.is_moe:
        raise InputError("sub-batch interleaving of a mixture-of-experts model is not "
                         "available in this version", where,
                         "drop --enable-sub-batch-interleaving")
    shape = (model.num_heads, model.num_kv_heads, model.head_dim)
    if device.fit_is_published and shape != FIT_SHAPE:
        raise InputError(f"the PIM attention fit of {device.name} holds for 32 query heads, 8 KV "
                         f"heads and head dim 128, not {model.name}'s {shape[0]}/{shape[1]}/"
                         f"{shape[2]}", where, f"add {SLOPE_KEY} and {INTERCEPT_KEY} fitted "
                         "for this model to the PIM device file")

