"""Cluster configs of a sweep: built from (model, hardware, TP, PP, instances or P/D split),
and described back as row columns (hardware, model, TP, PP, instance counts, GPUs)."""

from __future__ import annotations

from inference_serving.cluster_config import cluster_from_dict
from llm_profile.hardware_catalog import load_hardware
from llmsim_core.errors import InputError

# Host memory of the generated node (the shipped H100 config's): it holds swapped KV blocks.
CPU_MEM = {"mem_size": 512, "mem_bw": 256, "mem_latency": 0}


def build_cluster(model: str, hardware: str, tp: int, pp: int, instances: int,
                  pd: tuple[int, int] | None, mem: dict[str, float], where: str) -> dict:
    """One node holding `instances` colocated instances (or `pd` = prefill, decode instances)
    of `tp` x `pp` NPUs each; memory and link from the hardware catalogue unless `mem` sets
    `mem_gb`, `mem_bw` or `link_bw` (GB/s one way; the catalogue quotes both directions)."""
    if not {"mem_gb", "mem_bw", "link_bw"} <= set(mem):
        try:
            spec = load_hardware(hardware)
        except InputError as exc:
            raise InputError(exc.what, where, exc.fix + ", or set mem_gb, mem_bw and "
                             "link_bw") from None
        mem = {"mem_gb": spec.mem_capacity_gb, "mem_bw": spec.mem_bw_gbps,
               "link_bw": spec.interconnect_gbps / 2, **mem}
    roles = [None] * instances if pd is None else ["prefill"] * pd[0] + ["decode"] * pd[1]
    instance_list = [{"model_name": model, "hardware": hardware,
                      "npu_mem": {"mem_size": mem["mem_gb"], "mem_bw": mem["mem_bw"],
                                  "mem_latency": 0},
                      "npu_num": tp * pp, "npu_group": pp, "pd_type": role} for role in roles]
    cluster = {"num_nodes": 1, "link_bw": mem["link_bw"], "link_latency": 0,
               "nodes": [{"num_instances": len(roles), "cpu_mem": dict(CPU_MEM),
                          "instances": instance_list}]}
    cluster_from_dict(cluster, where)
    return cluster


def _one(values: list) -> object:
    """The common value, or 'mixed' when the instances differ."""
    return values[0] if len(set(values)) == 1 else "mixed"


def describe_cluster(cluster: dict) -> dict:
    """Row columns of a cluster: hardware, model, tp, pp, instance counts, GPUs."""
    insts = [i for node in cluster["nodes"] for i in node["instances"]]
    roles = [i.get("pd_type") for i in insts]
    return {"hardware": "+".join(sorted({i["hardware"] for i in insts})),
            "model": "+".join(sorted({i["model_name"] for i in insts})),
            "tp": _one([i["npu_num"] // i.get("npu_group", 1) for i in insts]),
            "pp": _one([i.get("npu_group", 1) for i in insts]),
            "instances": len(insts), "prefill": roles.count("prefill"),
            "decode": roles.count("decode"), "gpus": sum(i["npu_num"] for i in insts)}


def cluster_cost(cluster: dict, price: dict[str, float]) -> float:
    """Sum over NPUs of their hardware's price (1 per NPU when the spec names none)."""
    return sum(i["npu_num"] * price.get(i["hardware"], 1.0)
               for node in cluster["nodes"] for i in node["instances"])


def hardware_names(cluster: dict) -> set[str]:
    """The hardware names a cluster uses."""
    return {i["hardware"] for node in cluster["nodes"] for i in node["instances"]}
