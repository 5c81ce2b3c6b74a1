"""Write the exact files the real ASTRA-Sim binaries read, in the upstream or casys dialect.

Traces `<prefix>.<npu>.et`, `network.yml`, `system.json`, the memory JSON and comm groups
(engine.md §8). Dialects differ in node-type numbering, duration unit, the integer type of
send/recv attributes, memory attributes and the memory JSON layout.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from astra_sim.chakra_et import (
    CASYS_NUMBERING,
    UPSTREAM_NUMBERING,
    Attr,
    GlobalMetadata,
    Node,
    write_et,
)
from astra_sim.engine import EngineConfig
from astra_sim.memory import TIER_NAMES, MemorySystem
from astra_sim.network import network_yml

DIALECTS = ("upstream", "casys")
P2P_ATTRS = ("comm_src", "comm_dst", "comm_tag")
CASYS_MEMORY_ATTRS = ("tensor_loc", "tensor_device", "tensor_channel")


def node_for_dialect(node: Node, dialect: str) -> Node:
    """A copy of `node` with the dialect's duration unit, attribute types and all deps as data
    deps."""
    attrs = []
    for a in node.attrs:
        if a.name in P2P_ATTRS:
            attrs.append(Attr(a.name, "uint32" if dialect == "upstream" else "int32", a.value))
        elif a.name in CASYS_MEMORY_ATTRS:
            if dialect == "casys":
                attrs.append(Attr(a.name, "uint32", a.value))
        else:
            attrs.append(a)
    duration = node.duration_micros if dialect == "casys" else node.duration_micros // 1000
    deps = list(dict.fromkeys(node.data_deps + node.ctrl_deps))
    return Node(node.id, node.name, node.type, deps, [], duration, node.start_time_micros, attrs)


def system_json(config: EngineConfig) -> dict:
    """system.json with the keys both binaries accept (engine.md §4.6)."""
    s = config.system
    out = {
        "scheduling-policy": s.scheduling_policy,
        "endpoint-delay": s.endpoint_delay,
        "active-chunks-per-dimension": s.active_chunks_per_dimension,
        "preferred-dataset-splits": s.preferred_dataset_splits,
        "collective-optimization": s.collective_optimization,
        "local-mem-bw": s.local_mem_bw,
        "all-reduce-implementation": list(s.all_reduce),
        "all-gather-implementation": list(s.all_gather),
        "reduce-scatter-implementation": list(s.reduce_scatter),
        "all-to-all-implementation": list(s.all_to_all),
        "boost-mode": 0,
    }
    if config.roofline:
        out["roofline-enabled"] = 1
        out["peak-perf"] = config.peak_tflops
    return out


def memory_json(memory: MemorySystem | None, dialect: str) -> dict:
    """Upstream flat object or casys nested tiers for the same memory system."""
    if memory is None or not memory.tiers:
        return {"memory-type": "NO_MEMORY_EXPANSION"} if dialect == "upstream" else {}
    if dialect == "casys":
        out = {}
        for loc, tier in memory.tiers.items():
            kind = {1: "PER_NPU_MEMORY_EXPANSION", 2: "PER_NODE_MEMORY_EXPANSION",
                    3: "MEMORY_POOL"}[loc]
            entry = {"memory-type": kind, "mem-latency": tier.latency_ns,
                     "mem-bw": tier.bw_bytes_per_ns, "num-devices": tier.num_devices}
            if tier.pim_channels:
                entry["pim-channels"] = tier.pim_channels
            out[TIER_NAMES[loc]] = entry
        return out
    remote = memory.tiers.get(2) or next(iter(memory.tiers.values()))
    base = {"remote-mem-latency": remote.latency_ns, "remote-mem-bw": int(remote.bw_bytes_per_ns)}
    if memory.npus_per_node:
        return {"memory-type": "PER_NODE_MEMORY_EXPANSION", **base,
                "num-nodes": remote.num_devices, "num-npus-per-node": memory.npus_per_node}
    if memory.pool or remote.queued:
        return {"memory-type": "MEMORY_POOL", **base}
    return {"memory-type": "PER_NPU_MEMORY_EXPANSION", **base}


def export(directory: Path, graphs: Mapping[int, Sequence[Node]], config: EngineConfig,
           memory: MemorySystem | None = None, dialect: str = "upstream",
           prefix: str = "llm") -> Path:
    """Write traces and configuration files; return the workload prefix path."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}; use one of {', '.join(DIALECTS)}")
    directory.mkdir(parents=True, exist_ok=True)
    numbering = UPSTREAM_NUMBERING if dialect == "upstream" else CASYS_NUMBERING
    if dialect == "casys":
        meta = GlobalMetadata(version="", attrs=[Attr("schema", "string", "llmservingsim-py"),
                                                 Attr("input_file", "string", prefix)])
    else:
        meta = GlobalMetadata()
    for npu, nodes in graphs.items():
        write_et(directory / f"{prefix}.{npu}.et", meta,
                 [node_for_dialect(n, dialect) for n in nodes],
                 numbering)
    (directory / "network.yml").write_text(network_yml(config.dims))
    (directory / "system.json").write_text(json.dumps(system_json(config), indent=2) + "\n")
    (directory / "memory.json").write_text(json.dumps(memory_json(memory, dialect), indent=2)
                                           + "\n")
    if config.comm_groups:
        groups = {k: list(v) for k, v in config.comm_groups.items()}
        (directory / "comm_group.json").write_text(json.dumps(groups) + "\n")
    return directory / prefix
