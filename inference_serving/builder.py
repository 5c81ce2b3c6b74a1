"""Turns a validated cluster config and run options into runtime instances."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from inference_serving.cluster_config import ClusterConfig, InstanceSpec
from inference_serving.expert_router import expert_router
from inference_serving.fabric import InstanceFabric, instance_fabric, receiver_tp
from inference_serving.instance import Instance
from inference_serving.kv import KVCacheManager
from inference_serving.kv.setup import KvSetup
from inference_serving.memory_model import (
    KvBudget,
    kv_budget,
    kv_bytes_per_token,
    offloaded_weight_bytes,
    vllm_kv_budget,
)
from inference_serving.options import RunOptions
from inference_serving.pim_device import PimDevice
from inference_serving.pim_offload import (
    PimSetup,
    check_offloadable,
    offload_cluster,
    pim_setup,
)
from inference_serving.placement import WeightMap
from inference_serving.plan_builder import DisaggregationRole, PlanBuilder, StoreSizes
from inference_serving.pricers import PRICERS, Pricer
from inference_serving.scheduler.base import Scheduler, SchedulerOptions, SchedulerResources
from inference_serving.scheduler.registry import make_scheduler, scheduler_class
from inference_serving.scheduler.vllm import streams_safely
from inference_serving.vllm_defaults import (
    ARTIFACT_VERSION,
    engine_defaults,
    known_version,
    resolve_version,
)
from inference_serving.weight_loads import WeightLoads
from llm_profile.factory import is_tpu, make_perf_model
from llmsim_core.errors import InputError
from llmsim_core.model_config import ModelConfig, load_model_config
from llmsim_core.op_templates import OpTemplate, dense_template, moe_template

MIB = 1 << 20
GIB = 1 << 30


def _check_supported(spec: InstanceSpec, model: ModelConfig, where: str) -> None:
    if spec.pp > model.num_layers:
        raise InputError(f"{spec.pp} pipeline stages for {model.num_layers} transformer blocks",
                         where, "use at most one stage per block (npu_group)")
    if spec.ep_size is not None and not model.is_moe:
        raise InputError(f"ep_size {spec.ep_size} splits experts, but {model.name} has none",
                         where, "drop ep_size for a dense model")
    if spec.ep_size is not None and model.num_experts % spec.ep_size:
        raise InputError(f"ep_size {spec.ep_size} does not divide the {model.num_experts} "
                         f"experts of {model.name}", where, "use a divisor of the expert count")
    if spec.pp > 1 and spec.pd_type == "prefill":
        raise InputError("a pipeline-parallel P/D prefill instance is not available in this "
                         "version", where, "use \"npu_group\": 1 for prefill instances")


def _check_dp_groups(cluster: ClusterConfig) -> None:
    """The ranks of one DP group serve one model on one hardware with one `ep_size`, and an
    `ep_size` needs that many ranks to hold the experts (TP degree × DP-group size)."""
    members: dict[str, list[InstanceSpec]] = {}
    for spec in cluster.instances:
        if spec.dp_group:
            members.setdefault(spec.dp_group, []).append(spec)
    for group, ranks in members.items():
        for field in ("model_name", "hardware", "ep_size"):
            values = {getattr(spec, field) for spec in ranks}
            if len(values) > 1:
                raise InputError(f"the ranks of dp_group {group!r} differ in {field} "
                                 f"({', '.join(sorted(map(str, values)))})", str(cluster.path),
                                 f"give every rank of the group the same {field}")
    for spec in cluster.instances:
        ranks = spec.tp * len(members.get(spec.dp_group or "", [spec]))
        if spec.ep_size is not None and spec.ep_size > ranks:
            raise InputError(f"ep_size {spec.ep_size} of instance {spec.instance_id} exceeds the "
                             f"{ranks} rank(s) that can hold experts (TP degree × DP-group "
                             "size): the other experts would be held by no NPU",
                             str(cluster.path), "lower ep_size or add ranks to the DP group")


def _check_tp(model: ModelConfig, tp: int, where: str) -> None:
    for label, value in (("attention heads", model.num_heads),
                         ("KV heads", model.num_kv_heads),
                         ("intermediate size", model.intermediate_size)):
        if value % tp:
            raise InputError(f"TP degree {tp} does not divide the model's {label} ({value})",
                             where, "choose npu_num / npu_group that divides it")
    # The vocabulary is padded to a multiple of the TP degree (as vLLM does), but each rank
    # needs at least one row of it.
    if model.vocab_size < tp:
        raise InputError(f"TP degree {tp} exceeds the model's vocab_size ({model.vocab_size})",
                         where, "choose a smaller npu_num / npu_group or fix vocab_size")


@dataclass(frozen=True, slots=True)
class EngineLimits:
    """An instance's token budget and sequence slots, and where they came from."""

    max_num_batched_tokens: int
    max_num_seqs: int
    reserve_full_input: bool
    source: str
    defaults_version: str | None = None  # the vLLM whose defaults filled unset limits


def engine_limits(options: RunOptions, model: ModelConfig, spec: InstanceSpec,
                  profile_vllm: str | None) -> EngineLimits:
    """Given values (cluster config key, then flag) win; unset ones take what vLLM picks for
    the instance's device (legacy scheduler: 2048 tokens, unlimited sequences; --compat
    artifact: this simulator's former 2048 tokens and 128 sequences)."""
    cls = scheduler_class(options.scheduler, options.custom_scheduler)
    legacy = getattr(cls, "legacy_limits", False)  # a class without it gets the vLLM meanings
    given_tokens = spec.max_num_batched_tokens or options.max_num_batched_tokens
    # Legacy: --max-batch 0 means unlimited; vllm: it defers to --max-num-seqs.
    given_seqs = spec.max_num_seqs or (options.max_batch if legacy else
                                       options.max_batch or options.max_num_seqs)
    reserve = False
    version = None
    if legacy:
        tokens, seqs, label = 2048, 0, "legacy defaults"
    elif options.compat.artifact_defaults:
        tokens, seqs, label = 2048, 128, "former defaults (--compat artifact)"
    else:
        version = resolve_version(options.vllm_version, profile_vllm)
        vllm = engine_defaults(version, spec.hardware, spec.npu_mem.size_bytes,
                               options.vllm_usage_context)
        tokens, seqs, reserve = vllm.max_num_batched_tokens, vllm.max_num_seqs, \
            vllm.reserve_full_input
        label = vllm.reason
    unset = [name for name, value in (("max_num_seqs", given_seqs),
                                      ("max_num_batched_tokens", given_tokens))
             if value is None or (legacy and name == "max_num_seqs" and not value)]
    source = f"{' and '.join(unset)}: {label}" if unset else "given"
    if reserve:
        source += "; whole prompt reserved at admission"
    tokens = tokens if given_tokens is None else given_tokens
    return EngineLimits(min(tokens or model.max_position_embeddings,
                            model.max_position_embeddings),
                        seqs if given_seqs is None else given_seqs, reserve, source,
                        version if unset else None)


def _make_scheduler(options: RunOptions, limits: EngineLimits, kv: KVCacheManager,
                    block_bytes: int, spec: InstanceSpec, host_capacity: int,
                    warn: Callable[[str], None]) -> Scheduler:
    cls = scheduler_class(options.scheduler, options.custom_scheduler)
    legacy = getattr(cls, "legacy_limits", False)
    sched_options = SchedulerOptions(
        max_num_batched_tokens=limits.max_num_batched_tokens,
        max_num_seqs=limits.max_num_seqs,
        block_size=kv.block_size,
        chunked_prefill=options.chunked_prefill and not legacy,
        long_prefill_token_threshold=options.long_prefill_token_threshold,
        prioritize_prefill=options.prioritize_prefill,
        gen_only=options.gen_only and spec.pd_type != "decode",
        handoff_after_prefill=spec.pd_type == "prefill",
        pipelined=spec.pp > 1,
        preemption=options.preemption_mode,
        reserve_full_input=limits.reserve_full_input,
        limits_source=limits.source,
        # Lazy decodes need one batch in flight, a plain KV pool, and no reader of running
        # requests' fields per iteration (prefill priority, P/D hand-off, PIM placement).
        stream_decodes=streams_safely(cls) and spec.pp == 1 and not options.prioritize_prefill
        and spec.pd_type != "prefill" and not kv.prefix_caching and not options.attn_offloading,
    )
    return make_scheduler(cls, sched_options, kv,
                          SchedulerResources(block_bytes, spec.npu_num, host_capacity, warn),
                          options.custom_scheduler)


def _kv_budget(model: ModelConfig, spec: InstanceSpec, options: RunOptions, block_size: int,
               limits: EngineLimits, weights: WeightMap | None) -> KvBudget:
    """The instance's KV blocks: vLLM's arithmetic when the config gives (or, in the current
    schema, defaults) gpu_memory_utilization, else mem_size × mem_util − weights."""
    if spec.vllm_memory:
        return vllm_kv_budget(model, spec.tp, spec.pp, options.fp_bytes, block_size,
                              spec.npu_mem.size_bytes, spec.mem_util,
                              limits.max_num_batched_tokens, limits.max_num_seqs, weights,
                              spec.ep_size)
    return kv_budget(model, spec.tp, spec.pp, options.fp_bytes, block_size,
                     spec.npu_mem.size_bytes, spec.mem_util, weights, spec.ep_size)


def _disaggregation(cluster: ClusterConfig, spec: InstanceSpec) -> DisaggregationRole | None:
    """P/D role of an instance, with its fitted overheads (cluster config, or the defaults)."""
    if spec.pd_type is None:
        return None
    overheads = {}
    if spec.prefill_oproj_overhead_ns is not None:
        overheads["prefill_oproj_ns"] = spec.prefill_oproj_overhead_ns
    if spec.decode_oproj_overhead_ns is not None:
        overheads["decode_oproj_ns"] = spec.decode_oproj_overhead_ns
    return DisaggregationRole(spec.pd_type, receiver_tp(cluster, spec), **overheads)


def _weight_map(spec: InstanceSpec, template: OpTemplate, num_layers: int,
                where: str) -> WeightMap | None:
    """The instance's resolved weight placement (None without a placement block)."""
    if spec.placement is None:
        return None
    ops = (*template.pre_ops, *template.compute_block_ops, *template.post_ops,
           *(("attn",) if "attn" in template.block_ops else ()),
           *(("expert",) if template.has_experts else ()))
    return spec.placement.resolve(num_layers, ops, where)


def _check_capacity(cluster: ClusterConfig, placed: dict[tuple, int]) -> None:
    """Weights placed in a node's host memory or in the CXL pool must fit in it."""
    for (tier, index), nbytes in placed.items():
        if tier == "cpu":
            size, where = cluster.nodes[index].cpu_mem.size_bytes, f"nodes[{index}].cpu_mem"
        else:
            size, where = cluster.cxl_mem.memory.size_bytes, "cxl_mem"
        if nbytes > size:
            raise InputError(f"{nbytes / GIB:.2f} GiB of weights are placed in {where}, which "
                             f"holds {size / GIB:.2f} GiB", f"key '{where}.mem_size' in "
                             f"{cluster.path}", "enlarge it or keep more weights on the NPUs")


def _note_idle_placement(cluster: ClusterConfig, options: RunOptions,
                         note: Callable[[str], None]) -> None:
    """Warn about placement keys and a CXL pool the run accepts but does not act on."""
    used_cxl = options.prefix_storage == "CXL" or any(
        spec.kv_evict_loc.startswith("cxl") or (spec.placement is not None and any(
            loc.startswith("cxl") for loc in (spec.placement.weights,
                                              *(r.weights or "" for r in spec.placement.blocks),
                                              *(w for _, w in spec.placement.layers))))
        for spec in cluster.instances)
    if cluster.cxl_mem is not None and not used_cxl:
        note(f"warning: cxl_mem in {cluster.path} is not used (no placement, kv_evict_loc or "
             "--prefix-storage CXL names it)")
    for spec in cluster.instances:
        if spec.placement is None:
            continue
        for key in spec.placement.idle_kv_loc:
            note(f"warning: {key} has no effect (KV always lives in device memory, as in the "
                 "existing simulator)")
        if spec.kv_evict_loc != "cpu" and options.scheduler == "vllm" and \
                options.preemption_mode == "recompute":
            note(f"warning: kv_evict_loc '{spec.kv_evict_loc}' of instance {spec.instance_id} "
                 f"in {cluster.path} has no effect: the vllm scheduler recomputes preempted "
                 "requests (add --preemption-mode swap to swap them there)")


def choose_pricer(cluster: ClusterConfig, options: RunOptions,
                  fabrics: dict[int, InstanceFabric]) -> Pricer:
    """The pricer the options name (`external` whenever an ASTRA-Sim binary times the run)."""
    name = options.pricer
    if options.network_backend == "external":
        name = "external"
    elif name == "external":
        raise InputError("--pricer external needs an ASTRA-Sim binary", "--pricer external",
                         "add --network-backend external --astra-sim-bin PATH")
    if name == "replay" and options.network_backend == "analytical-aware":
        multi = [index for index, fabric in fabrics.items() if len(fabric.engine_dims()) > 1]
        if multi:
            # The replay engine's congestion-aware network model takes one dimension only.
            raise InputError(f"--pricer replay with --network-backend analytical-aware needs a "
                             f"one-dimensional network, but instance {multi[0]} spans "
                             f"{len(fabrics[multi[0]].engine_dims())} (TP plus pipeline or P/D "
                             "links)", "command line", "use --pricer closed-form or "
                             "--network-backend analytical")
    return PRICERS[name](fabrics, len(cluster.nodes), options.astra_binary)


def _check_moe_flags(options: RunOptions, models: list[ModelConfig]) -> None:
    """The MoE flags do nothing on a cluster without a mixture-of-experts model."""
    if any(model.is_moe for model in models):
        return
    given = [flag for flag, used in (
        (f"--expert-routing-policy {options.expert_routing_policy}",
         options.expert_routing_policy != "FAST"),
        ("--no-moe-combine-alltoall", not options.moe_combine_alltoall)) if used]
    if given:
        raise InputError(f"{given[0]} has no effect: no instance serves a mixture-of-experts "
                         "model", "command line", f"drop {given[0].split()[0]}")


def build_instances(cluster: ClusterConfig, options: RunOptions,
                    warn: Callable[[str], None],
                    note: Callable[[str], None] = lambda line: print(line, file=sys.stderr)
                    ) -> list[Instance]:
    """Load every instance's model, perf model and memory budget, and choose the pricer; fail
    early on bad input (`warn` takes perf-model diagnostics, `note` one-line warnings)."""
    instances = []
    fabrics: dict[int, InstanceFabric] = {}
    models: dict[str, ModelConfig] = {}
    perfs: dict[tuple, object] = {}
    devices: dict[int, tuple[PimDevice, int]] = {}
    if options.attn_offloading:
        if options.network_backend == "external":
            raise InputError("attention offloading is priced in process, not by an external "
                             "ASTRA-Sim binary", "--enable-attn-offloading",
                             "drop --network-backend external")
        cluster, devices = offload_cluster(cluster, options.pim_configs, note)
    kv_setup = KvSetup(cluster, options)
    placed: dict[tuple, int] = {}  # off-device weight bytes per ("cpu", node) and ("cxl", 0)
    unknown_versions: set[str] = set()
    groups = sorted({spec.dp_group for spec in cluster.instances if spec.dp_group})
    _check_dp_groups(cluster)
    if groups:
        warn(f"dp_group {', '.join(groups)} in {cluster.path}: each DP rank runs as its own "
             "instance; the group's lockstep iterations and expert all-gather are not modelled")
    for node in cluster.nodes:
        if not options.attn_offloading and node.cpu_mem.bw_bytes_per_ns == 0:
            raise InputError("cpu_mem has no mem_bw / mem_latency (only attention offloading "
                             "supplies them)", f"nodes[{node.node_id}].cpu_mem in "
                             f"{cluster.path}", "add them or pass --enable-attn-offloading")
        for spec in node.instances:
            where = f"instance {spec.instance_id} (node {node.node_id}) in {cluster.path}"
            model = models.get(spec.model_name)
            if model is None:
                model = load_model_config(spec.model_name, options.model_configs, warn)
                models[spec.model_name] = model
            _check_supported(spec, model, where)
            _check_tp(model, spec.tp, where)
            pim: PimSetup | None = None
            if options.attn_offloading:
                device, channels = devices[node.node_id]
                check_offloadable(spec, model, device, options.sub_batch_interleaving, where)
                pim = pim_setup(device, channels, model, spec.tp, options.fp_bytes,
                                options.sub_batch_interleaving, options.compat.pim_defects)
            block_size = spec.block_size or options.block_size
            tpu = is_tpu(spec.hardware)
            template = moe_template(tpu, spec.tp, options.moe_combine_alltoall,
                                    model.qk_norm) \
                if model.is_moe else dense_template(tpu, spec.tp, model.qk_norm)
            weights = _weight_map(spec, template, model.num_layers, where)
            # Instances of one model on one hardware at one TP share their (pure, memoizing)
            # perf model: its tables are read once. A user's CUSTOM class gets one each.
            perf_key = (spec.hardware, spec.model_name, spec.tp)
            perf = perfs.get(perf_key) if options.perf_model != "CUSTOM" else None
            if perf is None:
                perf = perfs[perf_key] = make_perf_model(
                    options.perf_models, spec.hardware, model, spec.tp, options.fp_bits, warn,
                    options.attn_prediction, options.perf_model, options.custom_perf_model)
            profile_vllm = getattr(perf, "vllm_version", None)
            limits = engine_limits(options, model, spec, profile_vllm)
            # Unset limits took vLLM defaults of a version the profile did not name.
            if profile_vllm and options.vllm_version == "auto" and \
                    limits.defaults_version is not None and \
                    not known_version(profile_vllm) and profile_vllm not in unknown_versions:
                unknown_versions.add(profile_vllm)
                note(f"warning: the profile's vLLM {profile_vllm} has no known engine defaults; "
                     f"unset limits follow vLLM {ARTIFACT_VERSION} (pass --vllm-version to "
                     "choose)")
            budget = _kv_budget(model, spec, options, block_size, limits, weights)
            offloaded = offloaded_weight_bytes(model, spec.tp, options.fp_bytes, weights)
            for loc, nbytes in offloaded.items():
                key = ("cpu", node.node_id) if loc == "cpu" else ("cxl", 0)
                placed[key] = placed.get(key, 0) + nbytes
            if budget.num_blocks < 1:
                raise InputError(
                    f"{model.name} does not fit: {budget.weight_bytes / MIB:.2f} MiB of weights "
                    f"per NPU leave no room for KV in {spec.npu_mem.size_bytes / MIB:.0f} MiB",
                    where, "use more NPUs (npu_num), a larger npu_mem.mem_size or a smaller --fp")
            loads = WeightLoads(model, spec.tp, options.fp_bytes, weights,
                                options.local_offloading)
            if pim is not None and loads.active:
                raise InputError("attention offloading with weights read during the iteration "
                                 "(placement off the NPU or --enable-local-offloading) is not "
                                 "available in this version", where,
                                 "keep the weights on the NPU or drop --enable-attn-offloading")
            plans = PlanBuilder(spec.instance_id, node.node_id, model, perf, template, spec.tp,
                                options.fp_bytes, spec.pp, _disaggregation(cluster, spec),
                                StoreSizes(options.compat.hidden_state_output_store,
                                           options.compat.whole_logits_handoff),
                                expert_router(options.expert_routing_policy,
                                              options.custom_expert_router), options.seed,
                                loads, pim, ep=spec.ep_size)
            fabrics[spec.instance_id] = instance_fabric(cluster, spec, options.network_backend,
                                                        options.local_offloading)
            if pim is not None:
                fabrics[spec.instance_id].pim_channels = pim.channels
            # Weights placed in host memory leave less of it for swapped-out KV.
            kv = kv_setup.manager(node, spec, budget, block_size,
                                  kv_bytes_per_token(model, options.fp_bytes),
                                  spec.kv_evict_loc, offloaded.get("cpu", 0))
            scheduler = _make_scheduler(options, limits, kv, budget.block_bytes, spec,
                                        node.cpu_mem.size_bytes - offloaded.get("cpu", 0), warn)
            instances.append(Instance(spec=spec, model=model, scheduler=scheduler, kv=kv,
                                      budget=budget, plans=plans,
                                      fabric=fabrics[spec.instance_id]))
    _check_capacity(cluster, placed)
    _check_moe_flags(options, [i.model for i in instances])
    _note_idle_placement(cluster, options, note)
    loading = [i.index for i in instances if i.plans.weights is not None]
    if loading and options.network_backend == "external":
        raise InputError(f"instance(s) {loading} load weights every iteration (placement off "
                         "the NPU or --enable-local-offloading), which the external binary's "
                         "memory configuration cannot express", "--network-backend external",
                         "use the analytical backend (closed-form or replay pricer)")
    pricer = choose_pricer(cluster, options, fabrics)
    for inst in instances:
        inst.pricer = pricer
    return instances
