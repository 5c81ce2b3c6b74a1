"""The run header: the input configuration a run actually used, printed before the first
status block (the existing simulator prints such a list too; nothing parses it)."""

from __future__ import annotations

from inference_serving.cluster_config import ClusterConfig
from inference_serving.instance import Instance
from inference_serving.options import RunOptions


def _overhead(inst: Instance) -> str:
    """The fitted P/D o_proj overhead an instance applies, or ''."""
    pd = inst.plans.pd
    if pd is None or inst.spec.tp == 1:
        return ""
    if pd.role == "prefill" and pd.prefill_oproj_ns:
        return f", P/D overhead {pd.prefill_oproj_ns} ns per o_proj"
    if pd.role == "decode" and pd.decode_oproj_ns:
        return f", P/D overhead {pd.decode_oproj_ns} ns per decode per o_proj"
    return ""


def run_header(options: RunOptions, cluster: ClusterConfig, instances: list[Instance],
               pricer: str, requests: int) -> str:
    """One `  • label : value` line per setting, then one per instance."""
    lines = ["Input configuration",
             f"  • cluster config : {options.cluster_config}",
             f"  • requests : {requests}" + (f" from {options.dataset}" if options.dataset else ""),
             f"  • scheduler : {options.scheduler}",
             f"  • pricer : {pricer}, network {options.network_backend}"]
    if options.astra_sim_bin is not None:
        lines.append(f"  • ASTRA-Sim binary : {options.astra_sim_bin} ({options.astra_sim_dialect} "
                     f"dialect, up to {options.astra_sim_timeout_s:g} s per answer)")
    if options.prefix_caching:
        kind = instances[0].kv.scheme
        tier = options.prefix_storage or "none"
        shared = ", shared" if options.prefix_sharing else ""
        lines.append(f"  • prefix caching : {kind}; second tier {tier}{shared}")
    if options.preemption_mode == "swap":
        lines.append("  • preemption : swap (recompute when the swap space is full)")
    for inst in instances:
        sched = getattr(inst.scheduler, "options", None)
        source = getattr(sched, "limits_source", "")
        budget = f", max_num_seqs {sched.max_num_seqs}, max_num_batched_tokens " \
            f"{sched.max_num_batched_tokens}" + (f" ({source})" if source else "") \
            if sched is not None else ""
        role = f" {inst.spec.pd_type}" if inst.spec.pd_type else ""
        lines.append(f"  • instance {inst.index}{role} : {inst.model.name} on "
                     f"{inst.spec.npu_num}x {inst.spec.hardware} (TP{inst.spec.tp}, "
                     f"PP{inst.spec.pp}, node {inst.spec.node_id}), {inst.plans.perf.name} "
                     f"latencies, {inst.kv.num_blocks} KV blocks{budget}{_overhead(inst)}")
    return "\n".join(lines)
