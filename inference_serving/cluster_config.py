"""Cluster configuration (`cluster_config/*.json`): nodes, instances, memories, links."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference_serving.placement import Placement, parse_placement
from inference_serving.power_config import PowerSpec, parse_power
from llmsim_core.bounds import (
    BANDWIDTH,
    DEVICE_COUNT,
    LATENCY,
    MEM_SIZE,
    MEM_UTIL,
    MEMORY_BANDWIDTH,
    OVERHEAD_NS,
    SCHEDULER_LIMIT,
    Bound,
    checked,
    checked_int,
)
from llmsim_core.errors import InputError
from llmsim_core.strict_json import check_keys, load_file

GIB = 1 << 30
VLLM_GPU_MEMORY_UTILIZATION = 0.9  # vLLM's default gpu_memory_utilization


@dataclass(frozen=True, slots=True)
class MemorySpec:
    """A memory: capacity in bytes, bandwidth in bytes/ns (decimal GB/s), latency in ns."""

    size_bytes: int
    bw_bytes_per_ns: float
    latency_ns: float


@dataclass(frozen=True, slots=True)
class InstanceSpec:
    """One model replica served by one scheduler on `npu_num` NPUs of one node."""

    instance_id: int
    node_id: int
    model_name: str
    hardware: str
    npu_mem: MemorySpec
    npu_num: int
    npu_group: int
    pd_type: str | None
    first_npu: int
    mem_util: float = 1.0
    # Extension: per-instance scheduler overrides (None = the command-line value).
    max_num_batched_tokens: int | None = None
    max_num_seqs: int | None = None
    block_size: int | None = None
    # Fitted P/D overheads (serving.md §6.7); None = the defaults, 0 = off.
    prefill_oproj_overhead_ns: int | None = None
    decode_oproj_overhead_ns: int | None = None
    # Current schema: expert-parallel degree (MoE experts split over ep_size ranks).
    ep_size: int | None = None
    dp_group: str | None = None  # current schema: data-parallel group name (see the builder)
    # True: mem_util is vLLM's gpu_memory_utilization, sized with vLLM's arithmetic
    # (memory_model.vllm_kv_budget); False: mem_size × mem_util − weights.
    vllm_memory: bool = False
    # Weight placement (formats.md §1.5); None = everything on the device.
    placement: Placement | None = None
    kv_evict_loc: str = "cpu"  # where swapped-out KV goes: "cpu" or "cxl:<k>"

    @property
    def tp(self) -> int:
        """Tensor-parallel degree: NPUs per pipeline stage."""
        return self.npu_num // self.npu_group

    @property
    def pp(self) -> int:
        """Pipeline-parallel degree (number of stages)."""
        return self.npu_group


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """A machine: host memory and the instances placed on it."""

    node_id: int
    cpu_mem: MemorySpec
    instances: tuple[InstanceSpec, ...]
    num_npus: int | None = None  # extension: physical NPUs of the node, checked if given
    power: PowerSpec | None = None  # the node's power block (formats.md §1.7)
    # Base name of the node's PIM device file (cpu_mem.pim_config); with it, cpu_mem's
    # mem_bw / mem_latency may be omitted (0 here) since attention offloading replaces them.
    pim_config: str | None = None


@dataclass(frozen=True, slots=True)
class CxlPool:
    """The top-level `cxl_mem` pool (formats.md §1.6): devices `CXL:0 … CXL:n−1`.

    `memory.size_bytes` is the capacity of the whole pool; bandwidth and latency are those of
    each device, and each device has its own FIFO.
    """

    memory: MemorySpec
    num_devices: int = 1


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """The validated cluster: nodes, instances, and the NPU-to-NPU link."""

    path: str
    link_bw_gbps: float
    link_latency_ns: float
    nodes: tuple[NodeSpec, ...]
    # Extension: links between nodes (default: the same as link_bw / link_latency).
    inter_node_bw_gbps: float | None = None
    inter_node_latency_ns: float | None = None
    cxl_mem: CxlPool | None = None

    def link(self, node_a: int, node_b: int) -> tuple[float, float]:
        """(bandwidth GB/s, latency ns) of the link between NPUs on two nodes."""
        if node_a != node_b and self.inter_node_bw_gbps is not None:
            return self.inter_node_bw_gbps, self.inter_node_latency_ns or 0.0
        return self.link_bw_gbps, self.link_latency_ns

    @property
    def instances(self) -> tuple[InstanceSpec, ...]:
        """All instances in global order (node 0's first)."""
        return tuple(inst for node in self.nodes for inst in node.instances)


# The current upstream schema names an instance's devices `num_npus` and its TP degree
# `tp_size` (pipeline stages = num_npus / tp_size) and may add `ep_size` (MoE) and `dp_group`.
CURRENT_INSTANCE_KEYS = frozenset({"num_npus", "tp_size", "ep_size", "dp_group"})
# Keys this version reads, per object of the file.
KNOWN_KEYS = {
    "top": frozenset({"num_nodes", "link_bw", "link_latency", "nodes", "inter_node_link_bw",
                      "inter_node_link_latency", "cxl_mem"}),
    "node": frozenset({"num_instances", "cpu_mem", "instances", "num_npus", "power"}),
    "cpu_mem": frozenset({"mem_size", "mem_bw", "mem_latency", "pim_config"}),
    "instance": frozenset({"model_name", "hardware", "npu_mem", "npu_num", "npu_group",
                           "pd_type", "max_num_batched_tokens", "max_num_seqs", "max_batch",
                           "block_size", "prefill_oproj_overhead_ns",
                           "decode_oproj_overhead_ns", "placement", *CURRENT_INSTANCE_KEYS}),
    "npu_mem": frozenset({"mem_size", "mem_bw", "mem_latency", "mem_util",
                          "gpu_memory_utilization"}),
    "cxl_mem": frozenset({"mem_size", "mem_bw", "mem_latency", "num_devices"}),
}
_FIX = "fix the cluster config"


class _Reader:
    """Typed access to a JSON object with errors that name the key path and the file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, what: str, key: str, fix: str) -> InputError:
        return InputError(what, f"key '{key}' in {self.path}", fix)

    def keys(self, raw: dict, kind: str, where: str) -> None:
        """Reject unknown keys of one object."""
        check_keys(raw, KNOWN_KEYS[kind], where, self.path)

    def obj(self, parent: dict, key: str, where: str) -> dict:
        value = self.get(parent, key, where)
        if not isinstance(value, dict):
            raise self.fail("expected a JSON object", f"{where}{key}", _FIX)
        return value

    def get(self, parent: dict, key: str, where: str) -> Any:
        if key not in parent:
            raise self.fail("missing required key", f"{where}{key}",
                            "add it (see spec/formats.md §1)")
        return parent[key]

    def number(self, parent: dict, key: str, where: str, bound: Bound) -> float:
        return checked(self.get(parent, key, where), bound, key,
                       f"key '{where}{key}' in {self.path}", _FIX)

    def integer(self, parent: dict, key: str, where: str, bound: Bound = DEVICE_COUNT) -> int:
        return checked_int(self.get(parent, key, where), bound, key,
                           f"key '{where}{key}' in {self.path}", _FIX)

    def memory(self, parent: dict, key: str, where: str, kind: str,
               pim: bool = False) -> MemorySpec:
        """A memory object; with `pim`, a missing mem_bw / mem_latency reads as 0."""
        mem = self.obj(parent, key, where)
        sub = f"{where}{key}."
        self.keys(mem, kind, sub)
        return MemorySpec(
            size_bytes=int(self.number(mem, "mem_size", sub, MEM_SIZE) * GIB),
            bw_bytes_per_ns=self.number(mem, "mem_bw", sub, MEMORY_BANDWIDTH)
            if not pim or "mem_bw" in mem else 0.0,
            latency_ns=self.number(mem, "mem_latency", sub, LATENCY)
            if not pim or "mem_latency" in mem else 0.0,
        )


def _devices(rd: _Reader, raw: dict, where: str) -> tuple[int, int, int | None]:
    """(npu_num, npu_group, ep_size) from either schema, auto-detected per instance:
    `npu_num` + `npu_group` (pipeline stages), or `num_npus` + `tp_size` (+ `ep_size`)."""
    legacy = {"npu_num", "npu_group"} & raw.keys()
    current = {"num_npus", "tp_size", "ep_size"} & raw.keys()
    if legacy and current:
        raise rd.fail(f"mixes the two schemas ({', '.join(sorted(legacy))} with "
                      f"{', '.join(sorted(current))})", f"{where}{sorted(current)[0]}",
                      "use npu_num + npu_group, or num_npus + tp_size, not both")
    if current:
        npu_num = rd.integer(raw, "num_npus", where)
        tp = rd.integer(raw, "tp_size", where)
        if tp > npu_num or npu_num % tp:
            raise rd.fail(f"tp_size {tp} must divide num_npus {npu_num}", f"{where}tp_size",
                          "use a divisor of num_npus (pipeline stages = num_npus / tp_size)")
        ep = rd.integer(raw, "ep_size", where) if "ep_size" in raw else None
        return npu_num, npu_num // tp, ep
    npu_num = rd.integer(raw, "npu_num", where)
    npu_group = rd.integer(raw, "npu_group", where)
    if npu_group > npu_num or npu_num % npu_group:
        raise rd.fail(f"npu_group {npu_group} (pipeline stages) must divide npu_num {npu_num}",
                      f"{where}npu_group", "use a divisor of npu_num")
    return npu_num, npu_group, None


def _memory_fraction(rd: _Reader, mem: dict, where: str, current: bool) -> tuple[float, bool]:
    """(fraction, vLLM arithmetic?): `mem_util` is the share of mem_size KV and weights may
    use; `gpu_memory_utilization` is vLLM's, sized as vLLM does. With neither, the old schema
    budgets the whole mem_size and the current one takes vLLM's default 0.9."""
    if "mem_util" in mem and "gpu_memory_utilization" in mem:
        raise rd.fail("mem_util and gpu_memory_utilization both set",
                      f"{where}gpu_memory_utilization", "keep one of them")
    if "gpu_memory_utilization" in mem:
        return rd.number(mem, "gpu_memory_utilization", where, MEM_UTIL), True
    if "mem_util" in mem:
        return rd.number(mem, "mem_util", where, MEM_UTIL), False
    return (VLLM_GPU_MEMORY_UTILIZATION, True) if current else (1.0, False)


def _pim_config(rd: _Reader, node: dict, where: str) -> str | None:
    """The node's `cpu_mem.pim_config` (a device file base name), if any."""
    cpu_mem = rd.obj(node, "cpu_mem", where)
    if "pim_config" not in cpu_mem:
        return None
    name = cpu_mem["pim_config"]
    if not isinstance(name, str) or not name:
        raise rd.fail("expected a non-empty string", f"{where}cpu_mem.pim_config",
                      "name a PIM device file without its .ini extension")
    return name


def _parse_instance(rd: _Reader, raw: Any, where: str, instance_id: int, node_id: int,
                    first_npu: int, cxl_devices: int | None = None) -> InstanceSpec:
    if not isinstance(raw, dict):
        raise rd.fail("expected a JSON object", where.rstrip("."), _FIX)
    rd.keys(raw, "instance", where)
    model = rd.get(raw, "model_name", where)
    hardware = rd.get(raw, "hardware", where)
    for key, value in (("model_name", model), ("hardware", hardware)):
        if not isinstance(value, str) or not value:
            raise rd.fail("expected a non-empty string", f"{where}{key}", _FIX)
    npu_num, npu_group, ep_size = _devices(rd, raw, where)
    dp_group = raw.get("dp_group")
    if dp_group is not None and (not isinstance(dp_group, str) or not dp_group):
        raise rd.fail("expected a non-empty string", f"{where}dp_group", "name the DP group")
    current_schema = "num_npus" in raw
    if "pd_type" not in raw:
        raise rd.fail("missing required key", f"{where}pd_type",
                      "add \"pd_type\": null for a colocated instance")
    pd_type = raw["pd_type"]
    if pd_type not in (None, "prefill", "decode"):
        raise rd.fail(f"unknown pd_type {pd_type!r}", f"{where}pd_type",
                      "use null, \"prefill\" or \"decode\"")
    npu_mem = rd.memory(raw, "npu_mem", where, "npu_mem")
    mem_util, vllm_memory = _memory_fraction(rd, raw["npu_mem"], f"{where}npu_mem.",
                                             current_schema)
    overrides = {}
    for key, aliases in (("max_num_batched_tokens", ()), ("max_num_seqs", ("max_batch",)),
                         ("block_size", ())):
        for name in (key, *aliases):
            if name in raw:
                value = rd.integer(raw, name, where, SCHEDULER_LIMIT)
                if overrides.get(key, value) != value:
                    raise rd.fail(f"{key} {overrides[key]} and {name} {value} name the same "
                                  "limit and disagree", f"{where}{name}", "keep one of them")
                overrides[key] = value
    for key, role in (("prefill_oproj_overhead_ns", "prefill"),
                      ("decode_oproj_overhead_ns", "decode")):
        if key in raw:
            if pd_type != role:
                raise rd.fail(f"{key} applies only to a {role} instance (pd_type "
                              f"{pd_type!r} here)", f"{where}{key}",
                              f"drop it or set pd_type to {role!r}")
            overrides[key] = rd.integer(raw, key, where, OVERHEAD_NS)
            if npu_num // npu_group == 1:
                raise rd.fail(f"{key} applies only to an instance with TP > 1 (the fitted KV "
                              "preparation of a TP group); at TP 1 it has no effect",
                              f"{where}{key}", "drop it")
    if "placement" in raw:
        placement = parse_placement(raw["placement"], f"{rd.path}: {where}placement",
                                    cxl_devices)
        overrides.update(placement=placement, kv_evict_loc=placement.kv_evict_loc)
    return InstanceSpec(instance_id=instance_id, node_id=node_id, model_name=model,
                        hardware=hardware, npu_mem=npu_mem, npu_num=npu_num,
                        npu_group=npu_group, pd_type=pd_type, first_npu=first_npu,
                        mem_util=mem_util, ep_size=ep_size, vllm_memory=vllm_memory,
                        dp_group=dp_group,
                        **overrides)


def cluster_from_dict(raw: Any, path: str) -> ClusterConfig:
    """Validate a parsed cluster config and number instances and NPUs globally."""
    rd = _Reader(path)
    if not isinstance(raw, dict):
        raise InputError("cluster config is not a JSON object", path, "fix the file")
    rd.keys(raw, "top", "")
    num_nodes = rd.integer(raw, "num_nodes", "")
    link_bw = rd.number(raw, "link_bw", "", BANDWIDTH)
    link_latency = rd.number(raw, "link_latency", "", LATENCY)
    nodes_raw = rd.get(raw, "nodes", "")
    if not isinstance(nodes_raw, list):
        raise rd.fail(f"'nodes' must be a list of node objects, got {type(nodes_raw).__name__}",
                      "nodes", "write nodes as a JSON list of node objects")
    if len(nodes_raw) != num_nodes:
        raise rd.fail(f"num_nodes is {num_nodes} but nodes has {len(nodes_raw)} entries",
                      "nodes", "make num_nodes equal the number of node objects")
    cxl = None
    if "cxl_mem" in raw:
        cxl_raw = rd.obj(raw, "cxl_mem", "")
        devices = rd.integer(cxl_raw, "num_devices", "cxl_mem.") if "num_devices" in cxl_raw \
            else 1
        cxl = CxlPool(memory=rd.memory(raw, "cxl_mem", "", "cxl_mem"), num_devices=devices)
    nodes: list[NodeSpec] = []
    instance_id = 0
    next_npu = 0
    for node_id, node in enumerate(nodes_raw):
        where = f"nodes[{node_id}]."
        if not isinstance(node, dict):
            raise rd.fail("expected a JSON object", where.rstrip("."), _FIX)
        rd.keys(node, "node", where)
        num_inst = rd.integer(node, "num_instances", where)
        inst_raw = rd.get(node, "instances", where)
        if not isinstance(inst_raw, list):
            raise rd.fail(f"'instances' must be a list of instance objects, got "
                          f"{type(inst_raw).__name__}", f"{where}instances",
                          "write instances as a JSON list of instance objects")
        if len(inst_raw) != num_inst:
            raise rd.fail(f"num_instances is {num_inst} but instances has {len(inst_raw)} "
                          "entries", f"{where}instances", "make them agree")
        pim_config = _pim_config(rd, node, where)
        cpu_mem = rd.memory(node, "cpu_mem", where, "cpu_mem", pim_config is not None)
        instances = []
        for k, inst in enumerate(inst_raw):
            spec = _parse_instance(rd, inst, f"{where}instances[{k}].", instance_id, node_id,
                                   next_npu, cxl.num_devices if cxl else None)
            instances.append(spec)
            instance_id += 1
            # A prefill instance also owns paired receiver NPUs (formats.md §1.8).
            next_npu += spec.npu_num * (2 if spec.pd_type == "prefill" else 1)
        num_npus = rd.integer(node, "num_npus", where) if "num_npus" in node else None
        if num_npus is not None:
            used = sum(i.npu_num for i in instances)
            if used > num_npus:
                raise rd.fail(f"the node's instances use {used} NPUs but it has {num_npus}",
                              f"{where}num_npus", "use fewer or smaller instances")
        power = parse_power(node["power"], f"{where}power.", path,
                            list(dict.fromkeys(i.hardware for i in instances))) \
            if "power" in node else None
        if power is not None and power.dram_dimm_gb is not None and \
                power.dram_dimm_gb * GIB > cpu_mem.size_bytes:
            raise rd.fail(f"power.dram.dimm_size {power.dram_dimm_gb:g} GB exceeds the node's "
                          f"cpu_mem.mem_size {cpu_mem.size_bytes / GIB:g} GB: it would hold no "
                          "DIMM", f"{where}power.dram.dimm_size", "give the size of one DIMM")
        nodes.append(NodeSpec(node_id=node_id, cpu_mem=cpu_mem, instances=tuple(instances),
                              num_npus=num_npus, power=power, pim_config=pim_config))
    roles = {i.pd_type for n in nodes for i in n.instances}
    pd_models = {i.model_name for n in nodes for i in n.instances if i.pd_type is not None}
    if len(pd_models) > 1:
        raise rd.fail(f"the prefill and decode instances serve different models "
                      f"({', '.join(sorted(pd_models))}): decode would continue another model's "
                      "KV cache", "nodes", "serve one model on every P/D instance")
    if ("prefill" in roles) != ("decode" in roles):
        missing = "decode" if "prefill" in roles else "prefill"
        raise rd.fail(f"prefill/decode disaggregation needs a {missing} instance", "nodes",
                      f"add an instance with \"pd_type\": \"{missing}\" or use null")
    inter_bw = inter_lat = None
    if "inter_node_link_bw" in raw:
        inter_bw = rd.number(raw, "inter_node_link_bw", "", BANDWIDTH)
        inter_lat = rd.number(raw, "inter_node_link_latency", "", LATENCY) \
            if "inter_node_link_latency" in raw else link_latency
    return ClusterConfig(path=path, link_bw_gbps=link_bw, link_latency_ns=link_latency,
                         nodes=tuple(nodes), inter_node_bw_gbps=inter_bw,
                         inter_node_latency_ns=inter_lat,
                         cxl_mem=cxl)


def load_cluster_config(path: Path) -> ClusterConfig:
    """Read and validate a cluster config file."""
    if not path.is_file():
        raise InputError("cluster config not found", str(path), "pass an existing file to "
                         "--cluster-config")
    return cluster_from_dict(load_file(path, "fix the JSON syntax"), str(path))
