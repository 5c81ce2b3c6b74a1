"""The PerfModel interface: operator and attention latencies for one (hardware, model, tp)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class AttentionBatch:
    """What attention sees in one iteration, per layer and per TP rank.

    `prefill_q[i]` tokens are computed for prefill entry i on top of `prefill_kv[i]` tokens
    already in its KV cache; `decode_lens[j]` is the context length (tokens in the sequence,
    the new one included) of decode entry j.
    """

    prefill_q: tuple[int, ...]
    prefill_kv: tuple[int, ...]
    decode_lens: tuple[int, ...]


class PerfModel(Protocol):
    """Latency source for one instance's operators (integer ns for one transformer block)."""

    name: str
    attention_source: str  # where attention latencies come from, for the start-up log

    def layer_ns(self, layer: str, tokens: int) -> int:
        """Latency of one call of operator `layer` over `tokens` tokens (one block)."""
        ...

    def attention_ns(self, batch: AttentionBatch) -> int:
        """Latency of one layer's attention over the whole batch."""
        ...
