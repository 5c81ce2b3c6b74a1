"""Run options: everything the CLI flags decide, validated once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from astra_sim.binary import DEFAULT_TIMEOUT_S, AstraBinary
from inference_serving.compat import CompatProfile
from inference_serving.fleet import Slo


@dataclass(frozen=True, slots=True)
class RunOptions:
    """Validated settings of one simulation run."""

    cluster_config: Path
    dataset: Path | None = None
    output: Path | None = None
    throughput_output: Path | None = None
    metrics_json: Path | None = None
    num_req: int = 100
    max_num_batched_tokens: int | None = None  # None: vLLM's choice per instance
    max_num_seqs: int | None = None  # None: vLLM's choice per instance
    vllm_version: str = "auto"
    vllm_usage_context: str = "api-server"
    max_batch: int = 0
    scheduler: str = "vllm"
    block_size: int = 16
    fp_bits: int = 16
    chunked_prefill: bool = True
    long_prefill_token_threshold: int = 0
    prioritize_prefill: bool = False
    gen_only: bool = False
    request_routing_policy: str = "RR"
    expert_routing_policy: str = "FAST"
    moe_combine_alltoall: bool = True
    custom_router: str | None = None
    log_interval_s: float = 0.5
    log_level: str = "WARNING"
    perf_models: Path = Path("llm_profile/perf_models")
    model_configs: Path = Path("model_config")
    seed: int = 42
    compat: CompatProfile = field(default_factory=CompatProfile)
    check_invariants: bool = False
    attn_prediction: bool = False
    network_backend: str = "analytical"
    pricer: str = "closed-form"
    astra_sim_bin: Path | None = None
    astra_sim_timeout_s: float = DEFAULT_TIMEOUT_S  # wall seconds per answer of the binary
    astra_sim_dialect: str = "casys"
    export_chakra: Path | None = None
    chakra_dialect: str = "casys"
    progress: bool = False
    custom_scheduler: str | None = None
    custom_expert_router: str | None = None
    perf_model: str = "auto"
    custom_perf_model: str | None = None
    slo: Slo = field(default_factory=Slo)
    trace_output: Path | None = None
    trace_max_requests: int = 1000
    plot_dir: Path | None = None
    quiet: bool = False
    prefix_caching: bool = False
    prefix_storage: str | None = None  # None, "CPU" or "CXL"
    prefix_sharing: bool = False
    preemption_mode: str = "recompute"
    local_offloading: bool = False  # --enable-local-offloading: time device-memory weight reads
    # PIM attention offload and sub-batch interleaving (serving.md §10).
    attn_offloading: bool = False
    sub_batch_interleaving: bool = False
    pim_configs: Path = Path("pim_config")

    @property
    def astra_binary(self) -> AstraBinary | None:
        """The external ASTRA-Sim binary with its time limit, if the run uses one."""
        if self.astra_sim_bin is None:
            return None
        return AstraBinary(self.astra_sim_bin, self.astra_sim_timeout_s)

    @property
    def fp_bytes(self) -> int:
        """Bytes per element."""
        return self.fp_bits // 8
