"""A request and its per-token bookkeeping."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field


@dataclass(slots=True, eq=False)
class Request:
    """One inference request from the dataset and its progress through the simulator.

    `num_tokens` is the sequence length so far (prompt + generated); `computed` is how many of
    those tokens already have KV on the device. The scheduler moves `computed` towards
    `num_tokens`; completing the last uncomputed token samples one new token.
    """

    rid: int
    arrival: int
    prompt: int
    output: int
    num_tokens: int = 0
    computed: int = 0
    generated: int = 0
    prefilled: bool = False
    swapped: bool = False
    blocks: int = 0
    instance: int = -1
    routed_instance: int = -1
    first_scheduled: int = -1
    first_token: int = -1
    last_token: int = -1
    end: int = -1
    # Only requests in flight hold their gaps (a finished request's go to the CSV and the
    # fleet samples); int64 so that a streaming decode's gaps are copied, not boxed.
    itl: array = field(default_factory=lambda: array("q"))
    # Streaming decodes only: the CSV text of the first `itl_texted` gaps, in pieces (built
    # from the iteration clock's formatted gaps, so a token costs no integer formatting).
    itl_text: list[str] | None = None
    itl_texted: int = 0
    # Prefix caching only: prompt then output token ids (None: the request never hits), the
    # chained keys of its full blocks, the block ids it references, how many of those are
    # published in the cache, and the per-NPU bytes of its KV parked on the swap space.
    token_ids: array | None = None
    hashes: list[int] = field(default_factory=list)
    block_ids: list[int] = field(default_factory=list)
    published: int = 0
    swap_bytes: int = 0
    # Scheduler bookkeeping: the request's place in the running order (admission sequence), and
    # while it streams (see scheduler/decode_stream.py) the first step it was not advanced for
    # (-1: its fields are current), num_tokens minus that step, and the steps at which it next
    # needs a KV block and samples its last token.
    seq: int = -1
    stream_from: int = -1
    stream_base: int = 0
    due_block: int = -1
    due_finish: int = -1

    def __post_init__(self) -> None:
        self.num_tokens = self.prompt

    @property
    def finished(self) -> bool:
        """True once every requested output token has been generated."""
        return self.generated >= self.output

    def itl_cell(self) -> str:
        """The ITL list as the CSV shows it: `[a, b, ...]`."""
        pieces = self.itl_text
        if pieces is None:
            return "[" + ", ".join(map(str, self.itl)) + "]"
        rest = self.itl[self.itl_texted:]
        if rest:
            pieces = [*pieces, ", ".join(map(str, rest))]
        return "[" + ", ".join(pieces) + "]"

    @property
    def ttft(self) -> int:
        """Time to first token (ns)."""
        return self.first_token - self.arrival

    @property
    def latency(self) -> int:
        """End-to-end latency (ns)."""
        return self.end - self.arrival

    @property
    def tpot(self) -> int:
        """Mean time per output token after the first (ns, floored); 0 for one-token outputs."""
        if self.output <= 1:
            return 0
        return (self.latency - self.ttft) // (self.output - 1)
