"""The PerfModel interface: operator and attention latencies for one (hardware, model, tp)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, overload


class DecodeLens(Sequence[int]):
    """Decode context lengths known by their number and total; listed on first use.

    The serving loop hands these out when it tracks a batch's decodes in aggregate: a model
    that needs only `len` and `decode_total` costs nothing per request.
    """

    __slots__ = ("count", "total", "_make", "_values")

    def __init__(self, count: int, total: int, make: Callable[[], tuple[int, ...]]) -> None:
        self.count = count
        self.total = total
        self._make = make
        self._values: tuple[int, ...] | None = None

    def values(self) -> tuple[int, ...]:
        """The lengths, in batch order."""
        if self._values is None:
            self._values = self._make()
        return self._values

    def __len__(self) -> int:
        return self.count

    @overload
    def __getitem__(self, index: int) -> int: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[int, ...]: ...

    def __getitem__(self, index: int | slice) -> int | tuple[int, ...]:
        return self.values()[index]

    def __iter__(self) -> Iterator[int]:
        return iter(self.values())

    def __eq__(self, other: object) -> bool:
        return tuple(self) == (tuple(other) if isinstance(other, Sequence) else other)

    def __hash__(self) -> int:
        return hash(self.values())


def decode_total(lens: Sequence[int]) -> int:
    """The sum of decode context lengths (without listing them when it is known)."""
    return lens.total if isinstance(lens, DecodeLens) else sum(lens)


@dataclass(frozen=True, slots=True)
class AttentionBatch:
    """What attention sees in one iteration, per layer and per TP rank.

    `prefill_q[i]` tokens are computed for prefill entry i on top of `prefill_kv[i]` tokens
    already in its KV cache; `decode_lens[j]` is the context length (tokens in the sequence,
    the new one included) of decode entry j (a tuple, or a `DecodeLens`: use `len` and
    `decode_total` where they suffice).
    """

    prefill_q: tuple[int, ...]
    prefill_kv: tuple[int, ...]
    decode_lens: Sequence[int]


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
