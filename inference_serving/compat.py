"""The existing simulator's quirks, gathered in one profile that the core only reads settings of."""

from __future__ import annotations

from dataclasses import dataclass

IDLE_POLL_NS = 1_000_000  # the existing simulator's clock step while the cluster is idle


@dataclass(frozen=True, slots=True)
class CompatProfile:
    """Which of the existing simulator's behaviours to reproduce (default: none).

    `idle_poll_ns`: on an idle cluster an arrival is noticed only at poll instants, every
    `idle_poll_ns` after the last event (0 = at once). `hidden_state_output_store`: an
    iteration stores one hidden state per request instead of its sampled token ids.
    `whole_logits_handoff`: a P/D prefill instance sends the whole logits with the KV.
    `routing_time_instance_id`: the per-request CSV names the instance a request was routed to
    on arrival rather than the one that completed it. `energy_at_schedule`: an iteration's
    whole energy lands when it is scheduled instead of while its operations run.
    `radix_prefix_cache`: prefix caching keeps the existing simulator's page-tree accounting
    (serving.md §8.1). `pim_defects`
    (only with `--compat-pim-defects`, never part of `artifact`): with attention offloading the
    NPU attention of a batch with a prefill still charges its decodes and, without
    interleaving, starts only after the layer's PIM group; under sub-batch interleaving each
    decode is placed on one PIM channel at 1/S of its time (serving.md §10).
    `artifact_defaults`: unset engine limits keep this simulator's former defaults (128
    sequences, 2048 tokens, no full-input reservation) instead of vLLM's own choices.
    """

    idle_poll_ns: int = 0
    hidden_state_output_store: bool = False
    whole_logits_handoff: bool = False
    routing_time_instance_id: bool = False
    artifact_defaults: bool = False
    energy_at_schedule: bool = False
    radix_prefix_cache: bool = False
    pim_defects: bool = False

    @classmethod
    def artifact(cls) -> CompatProfile:
        """Every quirk on: `--compat artifact` reproduces the existing simulator's outputs."""
        return cls(idle_poll_ns=IDLE_POLL_NS, hidden_state_output_store=True,
                   whole_logits_handoff=True, routing_time_instance_id=True,
                   energy_at_schedule=True, artifact_defaults=True, radix_prefix_cache=True)

    @classmethod
    def output_store_only(cls) -> CompatProfile:
        """`--compat-output-store`: only the hidden-state-sized output store."""
        return cls(hidden_state_output_store=True)
