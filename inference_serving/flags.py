"""Command-line flags: the parser and their validation into `RunOptions`."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from astra_sim.binary import DEFAULT_TIMEOUT_S
from astra_sim.export import DIALECTS
from inference_serving.cluster_config import ClusterConfig
from inference_serving.compat import CompatProfile
from inference_serving.expert_router import EXPERT_ROUTERS
from inference_serving.fabric import NETWORK_BACKENDS
from inference_serving.fleet import Slo
from inference_serving.options import RunOptions
from inference_serving.output_paths import check_run_paths
from inference_serving.plots import require_plotting
from inference_serving.pricers import PRICERS
from inference_serving.router import ROUTERS
from inference_serving.scheduler.registry import SCHEDULERS
from inference_serving.sim_log import LEVELS
from inference_serving.vllm_defaults import USAGE_CONTEXTS
from inference_serving.vllm_defaults import VERSIONS as VLLM_VERSIONS
from llm_profile.factory import PERF_MODELS
from llmsim_core.args import OneLineParser, integer, names_a_folder, number, was_given
from llmsim_core.bounds import BINARY_TIMEOUT_S, INT32_MAX, LOG_INTERVAL_S, SLO_MS, checked
from llmsim_core.errors import InputError
from llmsim_core.paths import (
    DEFAULT_CLUSTER_CONFIG,
    MODEL_CONFIG_DIR,
    PERF_MODELS_DIR,
    PIM_CONFIG_DIR,
    resolve_user_path,
)

SEED_MAX = 2**63 - 1  # seeds are non-negative 64-bit integers (as in sweep specs)
OUTPUT_FILE_FLAGS = ("--output", "--throughput-output", "--metrics-json", "--trace-output")


class _DefaultsFormatter(argparse.HelpFormatter):
    """Help that names each flag's default, except for switches and unset options."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "%(default)" in text or action.default in (None, False, True) or \
                action.default is argparse.SUPPRESS:
            return text
        return f"{text} (default: %(default)s)"


def request_count(text: str) -> int:
    """`--num-req` value: a count, or `all` (= 0) for the whole trace."""
    if text.strip().lower() == "all":
        return 0
    try:
        return integer(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"invalid --num-req value {text!r} (a count in digits "
                                         "0-9, or all)") from None


def build_parser() -> argparse.ArgumentParser:
    """The flag table of formats.md §7 for the features this version provides."""
    p = OneLineParser(prog="python main.py", description="Simulate an LLM serving cluster.",
                      formatter_class=_DefaultsFormatter)
    p.add_argument("--cluster-config", default=str(DEFAULT_CLUSTER_CONFIG),
                   help="cluster config JSON (default: %(default)s)")
    p.add_argument("--dataset", help="request trace (.jsonl); required")
    p.add_argument("--output", help="per-request CSV to write")
    p.add_argument("--throughput-output",
                   help="throughput time-series CSV (default: <output>_throughput.csv)")
    p.add_argument("--metrics-json", help="machine-readable summary to write")
    p.add_argument("--num-req", type=request_count, default=100,
                   help="requests to load (first N lines; 0 or 'all' = the whole trace)")
    p.add_argument("--max-batch", type=integer, default=0,
                   help="max requests per iteration (0 = --max-num-seqs for vllm, unlimited "
                   "for legacy)")
    p.add_argument("--max-num-seqs", type=integer,
                   help="max running requests per instance (vLLM max_num_seqs; default: what "
                   "--vllm-version picks for the instance's device; legacy: unlimited)")
    p.add_argument("--max-num-batched-tokens", type=integer,
                   help="per-iteration token budget (0 = model max length; default: what "
                   "--vllm-version picks for the instance's device; legacy: 2048)")
    p.add_argument("--vllm-version", default="auto", choices=("auto", *VLLM_VERSIONS),
                   help="the vLLM whose defaults unset limits follow (auto: the profile's "
                   "meta.yaml, else 0.11)")
    p.add_argument("--vllm-usage-context", default="api-server", choices=USAGE_CONTEXTS,
                   help="vLLM's defaults for `vllm serve` (api-server) or the offline LLM "
                   "class (llm)")
    p.add_argument("--block-size", type=integer, default=16, help="KV block size in tokens")
    p.add_argument("--fp", type=integer, default=16, choices=(8, 16, 32),
                   help="bits per element for every byte size")
    chunk = p.add_mutually_exclusive_group()
    chunk.add_argument("--enable-chunked-prefill", dest="chunked_prefill", action="store_true",
                       default=True, help="split long prompts over iterations (default)")
    chunk.add_argument("--no-enable-chunked-prefill", dest="chunked_prefill",
                       action="store_false", help="schedule whole prompts only")
    p.add_argument("--long-prefill-token-threshold", type=integer, default=0,
                   help="cap on one request's tokens per iteration (0 = none)")
    p.add_argument("--prioritize-prefill", action="store_true",
                   help="while any prompt work exists, iterations carry prompt work only")
    p.add_argument("--gen", action="store_true",
                   help="start every request as already prefilled (decode only)")
    p.add_argument("--scheduler", default="vllm", choices=(*SCHEDULERS, "CUSTOM"),
                   help="vllm: vLLM-v1 continuous batching; legacy: the existing "
                   "LLMServingSim scheduler (whole prompts, swap preemption); CUSTOM: "
                   "--custom-scheduler")
    p.add_argument("--request-routing-policy", default="RR", choices=(*ROUTERS, "CUSTOM"),
                   help="how arriving requests pick an instance (LOAD = least outstanding "
                   "tokens; CUSTOM = --custom-router)")
    p.add_argument("--expert-routing-policy", default="FAST",
                   choices=(*EXPERT_ROUTERS, "CUSTOM"),
                   help="MoE token-to-expert routing: RR, RAND (per layer), FAST (one draw "
                   "reused by every layer), seeded by --seed, or CUSTOM (--custom-expert-router)")
    p.add_argument("--no-moe-combine-alltoall", dest="moe_combine", action="store_false",
                   help="do not time the all-to-all that gathers expert outputs (TP > 1)")
    p.add_argument("--custom-router", metavar="PKG.MOD:CLASS",
                   help="router class for --request-routing-policy CUSTOM")
    p.add_argument("--network-backend", default="analytical", choices=tuple(NETWORK_BACKENDS),
                   help="collective timing: ASTRA-Sim's congestion-unaware or -aware analytical "
                   "model, packet-level ns-3 (extra [ns3]), or an external ASTRA-Sim binary "
                   "(--astra-sim-bin)")
    p.add_argument("--pricer", default="closed-form", choices=tuple(PRICERS),
                   help="how an iteration plan is timed: closed-form (lockstep arithmetic, the "
                   "fast path), replay (the per-NPU graphs on the cluster-wide engine) or "
                   "external (the ASTRA-Sim binary of --network-backend external); both "
                   "in-process pricers queue instances on their node's shared CPU memory")
    p.add_argument("--astra-sim-bin", metavar="PATH",
                   help="ASTRA-Sim analytical binary for --network-backend external")
    p.add_argument("--astra-sim-dialect", choices=DIALECTS,
                   help="with --network-backend external: casys (if unset) drives "
                   "LLMServingSim's fork over stdin/stdout (it owns the clock); upstream runs "
                   "the public binary once per distinct iteration")
    p.add_argument("--astra-sim-timeout", metavar="SECONDS", type=number,
                   help="with --network-backend external: wall seconds the binary may take "
                   f"per answer (casys: per step; upstream: per iteration run) before the run "
                   f"stops with an error (default {DEFAULT_TIMEOUT_S:g})")
    p.add_argument("--export-chakra", metavar="DIR",
                   help="write every iteration's Chakra graphs and ASTRA-Sim inputs under DIR")
    p.add_argument("--chakra-dialect", choices=DIALECTS,
                   help="ET dialect for --export-chakra: casys (if unset; ns durations) or "
                   "upstream (µs)")
    p.add_argument("--log-interval", type=number, default=0.5,
                   help="simulated seconds between status blocks")
    p.add_argument("--log-level", default="WARNING", choices=tuple(LEVELS),
                   help="diagnostics on stderr")
    p.add_argument("--perf-models", default=str(PERF_MODELS_DIR),
                   help="profile root laid out <hardware>/<org>/<model>/tp<N>/")
    p.add_argument("--model-configs", default=str(MODEL_CONFIG_DIR),
                   help="model config root laid out <org>/<model>.json")
    p.add_argument("--seed", type=integer, default=42, help="seed of every random policy")
    p.add_argument("--enable-attn-prediction", action="store_true",
                   help="train a random-forest attention model on each profile's "
                   "attention.csv at start-up instead of reading prediction grids")
    p.add_argument("--compat", choices=("artifact",),
                   help="reproduce the existing simulator's timing quirks: arrivals on an idle "
                   "cluster seen only at 1 ms polling steps (first poll at min(first arrival, "
                   "log interval)), hidden-state-sized output store, routing-time instance id "
                   "in the CSV under P/D")
    p.add_argument("--compat-output-store", action="store_true",
                   help="size the output store as the hidden state (existing simulator)")
    p.add_argument("--check-invariants", action="store_true",
                   help="assert the simulation invariants after every iteration")
    p.add_argument("--no-progress", action="store_true", help="never draw the progress bar")
    p.add_argument("--custom-scheduler", metavar="PKG.MOD:CLASS",
                   help="scheduler class for --scheduler CUSTOM")
    p.add_argument("--custom-expert-router", metavar="PKG.MOD:CLASS",
                   help="expert router class for --expert-routing-policy CUSTOM")
    p.add_argument("--perf-model", default="auto", choices=("auto", *PERF_MODELS, "CUSTOM"),
                   help="operator latencies: auto (profiled tables under --perf-models when "
                   "present, else roofline), profiled, roofline or CUSTOM (--custom-perf-model)")
    p.add_argument("--custom-perf-model", metavar="PKG.MOD:CLASS",
                   help="perf model class for --perf-model CUSTOM, constructed as "
                   "Class(hardware, model_config, tp, fp_bits) for every instance")
    p.add_argument("--quiet", action="store_true",
                   help="print only the final summary (no status blocks, progress or notes)")
    p.add_argument("--slo-ttft-ms", type=number,
                   help="TTFT objective: the summary adds SLO attainment and goodput")
    p.add_argument("--slo-tpot-ms", type=number, help="TPOT objective (see --slo-ttft-ms)")
    p.add_argument("--slo-e2e-ms", type=number,
                   help="end-to-end latency objective (see --slo-ttft-ms)")
    p.add_argument("--trace-output", metavar="PATH",
                   help="Chrome trace-event JSON of the run (Perfetto UI, chrome://tracing)")
    p.add_argument("--trace-max-requests", type=integer,
                   help="requests traced by --trace-output (the first N to arrive; batches are "
                   "traced until they have all finished); 0 = all; 1000 if unset")
    p.add_argument("--plot-dir", metavar="DIR",
                   help="write PNG plots of the run into DIR (needs the [plot] extra)")
    p.add_argument("--enable-prefix-caching", action="store_true",
                   help="reuse cached KV of equal prompt prefixes (needs input_tok_ids in the "
                   "dataset; requests without ids never hit)")
    p.add_argument("--prefix-storage", choices=("None", "CPU", "CXL"),
                   help="second-tier prefix store in CPU memory or the CXL pool; None (if "
                   "unset) = no second tier (needs "
                   "--enable-prefix-caching; CXL needs cxl_mem in the cluster config)")
    p.add_argument("--enable-prefix-sharing", action="store_true",
                   help="share the second tier: one CPU pool per node, one CXL pool for the "
                   "cluster (needs --prefix-storage)")
    p.add_argument("--preemption-mode", choices=("recompute", "swap"),
                   help="vllm scheduler: a preempted request's KV is dropped and recomputed "
                   "(vLLM's default, used if unset) or swapped out to the KV eviction memory "
                   "and back in (timed)")
    p.add_argument("--enable-local-offloading", action="store_true",
                   help="also time every operator's weight read from device memory "
                   "(npu_mem.mem_bw / mem_latency); double counts if the profiles include it")
    p.add_argument("--enable-attn-offloading", action="store_true",
                   help="decode attention runs on the PIM channels of each node's host memory "
                   "(needs cpu_mem.pim_config on every node)")
    p.add_argument("--enable-sub-batch-interleaving", action="store_true",
                   help="two interleaved sub-batches so NPU work overlaps PIM work (needs "
                   "--enable-attn-offloading)")
    p.add_argument("--compat-pim-defects", action="store_true",
                   help="with --enable-attn-offloading, reproduce the existing simulator's PIM "
                   "defects (decode attention also charged on the NPU in batches with a "
                   "prefill, after the PIM group without interleaving; under sub-batch "
                   "interleaving one placement per decode)")
    p.add_argument("--pim-configs", default=str(PIM_CONFIG_DIR),
                   help="PIM device root holding <name>.ini")
    return p


CUSTOM_FLAGS = (("scheduler", "--scheduler", "custom_scheduler", "--custom-scheduler"),
                ("request_routing_policy", "--request-routing-policy", "custom_router",
                 "--custom-router"),
                ("expert_routing_policy", "--expert-routing-policy", "custom_expert_router",
                 "--custom-expert-router"),
                ("perf_model", "--perf-model", "custom_perf_model", "--custom-perf-model"))


def _check_custom(args: argparse.Namespace) -> None:
    """Each `CUSTOM` policy comes with its class flag, and a class flag only with `CUSTOM`."""
    for policy, policy_flag, custom, custom_flag in CUSTOM_FLAGS:
        chosen, given = getattr(args, policy) == "CUSTOM", getattr(args, custom)
        if chosen and not given:
            raise InputError(f"{policy_flag} CUSTOM needs a class", "command line",
                             f"pass {custom_flag} package.module:Class")
        if given and not chosen:
            raise InputError(f"{custom_flag} is used only with {policy_flag} CUSTOM",
                             "command line", f"add {policy_flag} CUSTOM or drop {custom_flag}")


def _check_combinations(args: argparse.Namespace) -> None:
    """Flags that would do nothing, or contradict another, are errors."""
    lonely = (("--chakra-dialect", args.chakra_dialect, "--export-chakra", args.export_chakra),
              ("--astra-sim-dialect", args.astra_sim_dialect, "--network-backend external",
               args.network_backend == "external"),
              ("--astra-sim-timeout", args.astra_sim_timeout, "--network-backend external",
               args.network_backend == "external"),
              ("--trace-max-requests", args.trace_max_requests, "--trace-output",
               args.trace_output))
    for flag, value, needs, given in lonely:
        if value is not None and not given:
            raise InputError(f"{flag} has no effect without {needs}", "command line",
                             f"add {needs} or drop {flag}")
    if args.max_batch and args.max_num_seqs is not None and \
            args.max_batch != args.max_num_seqs and args.scheduler != "legacy":
        raise InputError(f"--max-batch {args.max_batch} and --max-num-seqs "
                         f"{args.max_num_seqs} name the same limit and disagree",
                         "command line", "pass one of them")
    if args.gen and args.prioritize_prefill:
        raise InputError("--prioritize-prefill has no effect with --gen (every request starts "
                         "prefilled: there is no prefill to put first)", "command line",
                         "drop one of them")
    if args.pricer != "closed-form" and args.network_backend == "external" and \
            args.pricer != "external":
        raise InputError(f"--pricer {args.pricer} contradicts --network-backend external (the "
                         "binary times every iteration)", "command line",
                         "drop --pricer or use an analytical backend")
    storage = args.prefix_storage not in (None, "None")
    prefix = (("--prefix-storage", storage, "--enable-prefix-caching",
               args.enable_prefix_caching),
              ("--enable-prefix-sharing", args.enable_prefix_sharing, "--prefix-storage CPU|CXL",
               storage))
    for flag, value, needs, given in prefix:
        if value and not given:
            raise InputError(f"{flag} has no effect without {needs}", "command line",
                             f"add {needs} or drop {flag}")
    legacy_ignores = [flag for flag, dest in (
        ("--long-prefill-token-threshold", "long_prefill_token_threshold"),
        ("--enable-chunked-prefill / --no-enable-chunked-prefill", "chunked_prefill"))
        if was_given(args, dest)]
    if legacy_ignores and args.scheduler == "legacy":
        raise InputError(f"{legacy_ignores[0]} has no effect with --scheduler legacy (it "
                         "schedules whole prompts)", "command line",
                         "drop the flag or use --scheduler vllm")
    if args.preemption_mode is not None and args.scheduler == "legacy":
        raise InputError("--preemption-mode applies to the vllm scheduler (legacy always "
                         "swaps)", "command line", "drop --preemption-mode or use --scheduler "
                         "vllm")
    if args.enable_attn_offloading and args.chakra_dialect == "upstream":
        raise InputError("upstream ASTRA-Sim graphs have no PIM nodes", "--chakra-dialect "
                         "upstream with --enable-attn-offloading", "use --chakra-dialect casys")
    if args.pim_configs != str(PIM_CONFIG_DIR) and not args.enable_attn_offloading:
        raise InputError("--pim-configs has no effect without --enable-attn-offloading",
                         "command line", "add --enable-attn-offloading or drop --pim-configs")
    if args.compat_pim_defects and not args.enable_attn_offloading:
        raise InputError("--compat-pim-defects has no effect without --enable-attn-offloading",
                         "command line", "add --enable-attn-offloading or drop it")
    if args.enable_sub_batch_interleaving and not args.enable_attn_offloading:
        raise InputError("--enable-sub-batch-interleaving interleaves PIM and NPU work and "
                         "needs --enable-attn-offloading", "command line",
                         "add --enable-attn-offloading")
    _check_vllm_defaults(args)
    if args.enable_attn_prediction and args.perf_model == "roofline":
        raise InputError("--enable-attn-prediction has no effect with --perf-model roofline",
                         "command line", "drop one of them")
    if was_given(args, "perf_models") and args.perf_model == "roofline":
        raise InputError("--perf-models has no effect with --perf-model roofline (no profile "
                         "is read)", "command line", "drop one of them")


def overridden_flags(args: argparse.Namespace, cluster: ClusterConfig) -> list[str]:
    """`warning:` lines for scheduling flags that every instance of the cluster config
    overrides with its own value (the flag then changes nothing)."""
    lines = []
    for flag, dest, key in (("--block-size", "block_size", "block_size"),
                            ("--max-num-seqs", "max_num_seqs", "max_num_seqs"),
                            ("--max-batch", "max_batch", "max_num_seqs"),
                            ("--max-num-batched-tokens", "max_num_batched_tokens",
                             "max_num_batched_tokens")):
        if was_given(args, dest) and all(getattr(spec, key) is not None
                                         for spec in cluster.instances):
            lines.append(f"warning: {flag} {getattr(args, dest)} changed nothing: every "
                         f"instance of {cluster.path} sets its own {key}")
    return lines


def _check_vllm_defaults(args: argparse.Namespace) -> None:
    """--vllm-version / --vllm-usage-context pick defaults for unset limits: an error where
    no vLLM default is used."""
    chosen = [flag for flag, value, default in (
        ("--vllm-version", args.vllm_version, "auto"),
        ("--vllm-usage-context", args.vllm_usage_context, "api-server")) if value != default]
    if not chosen:
        return
    if args.scheduler == "legacy":
        raise InputError(f"{chosen[0]} has no effect with --scheduler legacy (its own limits: "
                         "2048 tokens, unlimited sequences)", "command line",
                         f"drop {chosen[0]} or use --scheduler vllm")
    if args.compat == "artifact":
        raise InputError(f"{chosen[0]} has no effect with --compat artifact (the former limits: "
                         "2048 tokens, 128 sequences)", "command line",
                         f"drop {chosen[0]} or --compat artifact")
    seqs_given = args.max_num_seqs is not None or args.max_batch
    if args.vllm_usage_context != "api-server" and seqs_given and \
            args.max_num_batched_tokens is not None:
        raise InputError("--vllm-usage-context has no effect when --max-num-seqs and "
                         "--max-num-batched-tokens are both given", "command line",
                         "drop --vllm-usage-context or one of the limits")


def _check_not_empty(args: argparse.Namespace) -> None:
    """A text flag given as '' would be taken as unset (or as the working directory):
    an error, not a silently skipped output or a surprising root. An output file written as a
    folder (`out.csv/`) is an error too, not a file named without the separator."""
    for dest, value in sorted(vars(args).items()):
        if isinstance(value, str) and not value.strip():
            flag = "--" + dest.replace("_", "-")
            raise InputError(f"{flag} is empty", "command line",
                             f"give {flag} a value or drop it")
    for flag in OUTPUT_FILE_FLAGS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None and names_a_folder(value):
            raise InputError(f"{flag} ends in a separator, which names a folder",
                             f"{flag} {value}", "give a file path, e.g. <dir>/results.csv")


def _positive(value: float, flag: str, allow_zero: bool = False,
              high: int | None = INT32_MAX) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InputError(f"{flag} must be {bound}, got {value}", "command line",
                         f"pass a value {bound}")
    # Counts and limits are 32-bit integers, as in the cluster config (SCHEDULER_LIMIT).
    if high is not None and value > high:
        raise InputError(f"{flag} must be at most {high}, got {value}", "command line",
                         f"pass a value up to {high}")


def _external_binary(args: argparse.Namespace) -> Path | None:
    if (args.network_backend == "external") != bool(args.astra_sim_bin):
        raise InputError("--network-backend external and --astra-sim-bin go together",
                         "command line", "pass both or neither")
    if args.astra_sim_bin and not Path(args.astra_sim_bin).is_file():
        raise InputError("ASTRA-Sim binary not found", f"--astra-sim-bin {args.astra_sim_bin}",
                         "pass the path of your AnalyticalAstra build")
    if args.astra_sim_bin and not os.access(args.astra_sim_bin, os.X_OK):
        raise InputError("the ASTRA-Sim binary is not executable",
                         f"--astra-sim-bin {args.astra_sim_bin}",
                         f"chmod +x {args.astra_sim_bin} or pass your AnalyticalAstra build")
    return Path(args.astra_sim_bin) if args.astra_sim_bin else None


def compat_profile(args: argparse.Namespace) -> CompatProfile:
    """The quirks the compatibility flags ask for."""
    if args.compat == "artifact":
        profile = CompatProfile.artifact()
    elif args.compat_output_store:
        profile = CompatProfile.output_store_only()
    else:
        profile = CompatProfile()
    return replace(profile, pim_defects=True) if args.compat_pim_defects else profile


def options_from_args(args: argparse.Namespace, need_dataset: bool = True) -> RunOptions:
    """Validate flag values and combinations; resolve paths (the dataset may be left out when
    the requests come from elsewhere)."""
    if need_dataset and not args.dataset:
        raise InputError("no dataset given", "--dataset", "pass a .jsonl trace, e.g. "
                         "--dataset dataset/example_sharegpt_req100_rate10.jsonl")
    _check_not_empty(args)
    _positive(args.num_req, "--num-req", allow_zero=True, high=None)
    _positive(args.max_batch, "--max-batch", allow_zero=True)
    if args.max_num_seqs is not None:
        _positive(args.max_num_seqs, "--max-num-seqs")
    _check_combinations(args)
    if args.max_num_batched_tokens is not None:
        _positive(args.max_num_batched_tokens, "--max-num-batched-tokens", allow_zero=True)
    _positive(args.block_size, "--block-size")
    _positive(args.long_prefill_token_threshold, "--long-prefill-token-threshold",
              allow_zero=True)
    checked(args.log_interval, LOG_INTERVAL_S, "--log-interval", "command line",
            "pass a value in that range")
    if args.astra_sim_timeout is not None:
        checked(args.astra_sim_timeout, BINARY_TIMEOUT_S, "--astra-sim-timeout", "command line",
                "pass a value in that range")
    _positive(args.seed, "--seed", allow_zero=True, high=SEED_MAX)
    _check_custom(args)
    if args.trace_max_requests is not None:
        _positive(args.trace_max_requests, "--trace-max-requests", allow_zero=True)
    for flag, value in (("--slo-ttft-ms", args.slo_ttft_ms), ("--slo-tpot-ms", args.slo_tpot_ms),
                        ("--slo-e2e-ms", args.slo_e2e_ms)):
        if value is not None:
            checked(value, SLO_MS, flag, "command line", "pass a value in that range")
    if args.plot_dir:
        require_plotting()
    output = Path(args.output) if args.output else None
    throughput = Path(args.throughput_output) if args.throughput_output else None
    if throughput is None and output is not None:
        throughput = output.with_name(output.stem + "_throughput.csv")
    options = RunOptions(
        cluster_config=resolve_user_path(args.cluster_config),
        dataset=resolve_user_path(args.dataset) if args.dataset else None,
        output=output,
        throughput_output=throughput,
        metrics_json=Path(args.metrics_json) if args.metrics_json else None,
        num_req=args.num_req,
        max_num_batched_tokens=args.max_num_batched_tokens,
        max_num_seqs=args.max_num_seqs,
        vllm_version=args.vllm_version,
        vllm_usage_context=args.vllm_usage_context,
        max_batch=args.max_batch,
        scheduler=args.scheduler,
        block_size=args.block_size,
        fp_bits=args.fp,
        chunked_prefill=args.chunked_prefill,
        long_prefill_token_threshold=args.long_prefill_token_threshold,
        prioritize_prefill=args.prioritize_prefill,
        gen_only=args.gen,
        request_routing_policy=args.request_routing_policy,
        custom_router=args.custom_router,
        expert_routing_policy=args.expert_routing_policy,
        moe_combine_alltoall=args.moe_combine,
        log_interval_s=args.log_interval,
        log_level=args.log_level,
        perf_models=resolve_user_path(args.perf_models),
        model_configs=resolve_user_path(args.model_configs),
        seed=args.seed,
        compat=compat_profile(args),
        check_invariants=args.check_invariants,
        attn_prediction=args.enable_attn_prediction,
        network_backend=args.network_backend,
        pricer=args.pricer,
        astra_sim_bin=_external_binary(args),
        astra_sim_timeout_s=DEFAULT_TIMEOUT_S if args.astra_sim_timeout is None
        else args.astra_sim_timeout,
        astra_sim_dialect=args.astra_sim_dialect or "casys",
        export_chakra=Path(args.export_chakra) if args.export_chakra else None,
        chakra_dialect=args.chakra_dialect or "casys",
        progress=not args.no_progress and not args.quiet and sys.stderr.isatty(),
        slo=Slo(args.slo_ttft_ms, args.slo_tpot_ms, args.slo_e2e_ms),
        trace_output=Path(args.trace_output) if args.trace_output else None,
        trace_max_requests=1000 if args.trace_max_requests is None else args.trace_max_requests,
        plot_dir=Path(args.plot_dir) if args.plot_dir else None,
        quiet=args.quiet,
        custom_scheduler=args.custom_scheduler,
        custom_expert_router=args.custom_expert_router,
        perf_model=args.perf_model,
        custom_perf_model=args.custom_perf_model,
        prefix_caching=args.enable_prefix_caching,
        prefix_storage=None if args.prefix_storage in (None, "None") else args.prefix_storage,
        prefix_sharing=args.enable_prefix_sharing,
        preemption_mode=args.preemption_mode or "recompute",
        local_offloading=args.enable_local_offloading,
        attn_offloading=args.enable_attn_offloading,
        sub_batch_interleaving=args.enable_sub_batch_interleaving,
        pim_configs=resolve_user_path(args.pim_configs),
    )
    if args.perf_models != str(PERF_MODELS_DIR) and not options.perf_models.is_dir():
        raise InputError("--perf-models names no folder (every instance would silently fall "
                         "back to the roofline model)", f"--perf-models {args.perf_models}",
                         "pass the profile root laid out <hardware>/<org>/<model>/tp<N>/")
    check_run_paths(options)
    return options
