"""Turns a validated cluster config and run options into runtime instances."""

from __future__ import annotations

from collections.abc import Callable

from astra_sim import Dimension, SystemConfig, collective_ns, send_ns
from astra_sim.ns3_backend import INSTALL_HINT, Ns3Unavailable, ns3_collective_ns
from inference_serving.cluster_config import ClusterConfig, InstanceSpec
from inference_serving.expert_router import expert_router
from inference_serving.external_backend import ExternalIterationTimer
from inference_serving.instance import Instance
from inference_serving.iteration import (
    DisaggregationRole,
    IterationTimer,
)
from inference_serving.kv_cache import KVCacheManager
from inference_serving.memory_model import kv_budget
from inference_serving.options import RunOptions
from inference_serving.scheduler.base import Scheduler, SchedulerOptions
from inference_serving.scheduler.legacy import LegacyScheduler
from inference_serving.scheduler.vllm import VllmScheduler
from llm_profile.factory import is_tpu, make_perf_model
from llmsim_core.errors import InputError
from llmsim_core.model_config import ModelConfig, load_model_config
from llmsim_core.op_templates import dense_template, moe_template

MIB = 1 << 20
SCHEDULERS = ("vllm", "legacy")


def _check_supported(spec: InstanceSpec, model: ModelConfig, where: str) -> None:
    if spec.pp > model.num_layers:
        raise InputError(f"{spec.pp} pipeline stages for {model.num_layers} transformer blocks",
                         where, "use at most one stage per block (npu_group)")
    if spec.pp > 1 and spec.pd_type == "prefill":
        raise InputError("a pipeline-parallel P/D prefill instance is not available in this "
                         "version", where, "use \"npu_group\": 1 for prefill instances")


def _check_tp(model: ModelConfig, tp: int, where: str) -> None:
    for label, value in (("attention heads", model.num_heads),
                         ("KV heads", model.num_kv_heads),
                         ("intermediate size", model.intermediate_size)):
        if value % tp:
            raise InputError(f"TP degree {tp} does not divide the model's {label} ({value})",
                             where, "choose npu_num / npu_group that divides it")


def _collectives(cluster: ClusterConfig, spec: InstanceSpec,
                 backend: str) -> Callable[[str, int], int]:
    """Collectives (ring algorithms) over the instance's TP group on the cluster's links."""
    if spec.tp == 1:
        return lambda kind, nbytes: 0
    dims = (Dimension("FullyConnected", spec.tp, cluster.link_bw_gbps, cluster.link_latency_ns),)
    system = SystemConfig(local_mem_bw=spec.npu_mem.bw_bytes_per_ns)
    if backend == "ns3":
        try:
            ns3_collective_ns("all_reduce", 1 << 20, dims, system)  # load ns-3 once, up front
        except Ns3Unavailable as exc:
            raise InputError("the ns3 network backend is not installed", "--network-backend "
                             "ns3", INSTALL_HINT) from exc
        return lambda kind, nbytes: ns3_collective_ns(kind, nbytes, dims, system)
    aware = backend == "analytical-aware"
    return lambda kind, nbytes: collective_ns(kind, nbytes, dims, system, aware=aware)


def _make_scheduler(options: RunOptions, model: ModelConfig, kv: KVCacheManager,
                    block_bytes: int, spec: InstanceSpec, host_capacity: int,
                    warn: Callable[[str], None]) -> Scheduler:
    tokens = spec.max_num_batched_tokens or options.max_num_batched_tokens
    budget_tokens = min(tokens or model.max_position_embeddings, model.max_position_embeddings)
    legacy = options.scheduler == "legacy"
    # Legacy: --max-batch 0 means unlimited; vllm: it defers to --max-num-seqs.
    seqs = options.max_batch if legacy else options.max_batch or options.max_num_seqs
    sched_options = SchedulerOptions(
        max_num_batched_tokens=budget_tokens,
        max_num_seqs=spec.max_num_seqs or seqs,
        block_size=kv.block_size,
        chunked_prefill=options.chunked_prefill and not legacy,
        long_prefill_token_threshold=options.long_prefill_token_threshold,
        prioritize_prefill=options.prioritize_prefill,
        gen_only=options.gen_only and spec.pd_type != "decode",
        handoff_after_prefill=spec.pd_type == "prefill",
        pipelined=spec.pp > 1,
    )
    if legacy:
        return LegacyScheduler(sched_options, kv, block_bytes, spec.npu_num, host_capacity, warn)
    return VllmScheduler(sched_options, kv)


def _p2p(cluster: ClusterConfig, spec: InstanceSpec) -> Callable[[int], int]:
    """One message between NPUs of the instance's node (pipeline stage to stage)."""
    dims = (Dimension("FullyConnected", 2, cluster.link_bw_gbps, cluster.link_latency_ns),)
    return lambda nbytes: send_ns(nbytes, dims, 0, 1)


def _disaggregation(cluster: ClusterConfig, spec: InstanceSpec) -> DisaggregationRole | None:
    """P/D role of an instance; prefill sends go over the intra-node link when a decode
    instance shares the node, else over the inter-node link."""
    if spec.pd_type is None:
        return None
    if spec.pd_type == "decode":
        return DisaggregationRole("decode")
    decoders = [i for i in cluster.instances if i.pd_type == "decode"]
    peer = next((i for i in decoders if i.node_id == spec.node_id), decoders[0])
    bw, latency = cluster.link(spec.node_id, peer.node_id)
    dims = (Dimension("FullyConnected", 2, bw, latency),)
    return DisaggregationRole("prefill", lambda nbytes: send_ns(nbytes, dims, 0, 1), peer.tp)


def build_instances(cluster: ClusterConfig, options: RunOptions,
                    warn: Callable[[str], None]) -> list[Instance]:
    """Load every instance's model, perf model and memory budget; fail early on bad input."""
    instances = []
    models: dict[str, ModelConfig] = {}
    for node in cluster.nodes:
        for spec in node.instances:
            where = f"instance {spec.instance_id} (node {node.node_id}) in {cluster.path}"
            model = models.get(spec.model_name)
            if model is None:
                model = load_model_config(spec.model_name, options.model_configs)
                models[spec.model_name] = model
            _check_supported(spec, model, where)
            _check_tp(model, spec.tp, where)
            block_size = spec.block_size or options.block_size
            budget = kv_budget(model, spec.tp, spec.pp, options.fp_bytes, block_size,
                               spec.npu_mem.size_bytes, spec.mem_util)
            if budget.num_blocks < 1:
                raise InputError(
                    f"{model.name} does not fit: {budget.weight_bytes / MIB:.2f} MiB of weights "
                    f"per NPU leave no room for KV in {spec.npu_mem.size_bytes / MIB:.0f} MiB",
                    where, "use more NPUs (npu_num), a larger npu_mem.mem_size or a smaller --fp")
            perf = make_perf_model(options.perf_models, spec.hardware, model, spec.tp,
                                   options.fp_bits, warn, options.attn_prediction)
            one_shot = options.astra_sim_bin and options.astra_sim_dialect == "upstream"
            timer_cls = ExternalIterationTimer if one_shot else IterationTimer
            tpu = is_tpu(spec.hardware)
            template = moe_template(tpu, spec.tp, options.moe_combine_alltoall,
                                    model.qk_norm) \
                if model.is_moe else dense_template(tpu, spec.tp, model.qk_norm)
            timer = timer_cls(model, perf, template,
                                   spec.tp, options.fp_bytes, node.cpu_mem,
                                   _collectives(cluster, spec, options.network_backend),
                                   options.legacy_output_store, _disaggregation(cluster, spec),
                                   spec.pp, _p2p(cluster, spec),
                                   expert_router(options.expert_routing_policy), options.seed)
            if one_shot:
                timer.attach(cluster, spec, options.astra_sim_bin)
            kv = KVCacheManager(budget.num_blocks, block_size)
            scheduler = _make_scheduler(options, model, kv, budget.block_bytes, spec,
                                        node.cpu_mem.size_bytes, warn)
            instances.append(Instance(spec=spec, model=model, scheduler=scheduler, kv=kv,
                                      budget=budget, timer=timer))
    return instances
