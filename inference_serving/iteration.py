"""Per-iteration timing: the instance's op template is built once, each batch only prices it.

Every TP rank of a dense instance runs the same chain (input load, embedding, L identical
blocks with their all-reduces, final norm, lm_head, output store), so the ranks stay in
lockstep and the iteration latency is the closed-form sum of the chain (engine.md §11).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from inference_serving.cluster_config import MemorySpec
from inference_serving.errors import InputError
from inference_serving.model_config import ModelConfig
from inference_serving.scheduler.base import Batch
from llm_profile.perf_model import AttentionBatch, PerfModel

ALLREDUCE = "ALLREDUCE"
ATTENTION = "attn"
OUTPUT_TOKEN_ID_BYTES = 4


@dataclass(frozen=True, slots=True)
class OpTemplate:
    """Operator names of one iteration; `block_ops` repeats per layer and may contain the
    markers `attn` (attention over the batch) and `ALLREDUCE` (TP all-reduce)."""

    pre_ops: tuple[str, ...]
    block_ops: tuple[str, ...]
    post_ops: tuple[str, ...]

    @property
    def compute_block_ops(self) -> tuple[str, ...]:
        """Block operators priced by token count (everything but the markers)."""
        return tuple(op for op in self.block_ops if op not in (ATTENTION, ALLREDUCE))

    @property
    def allreduces_per_block(self) -> int:
        """TP all-reduces in one block."""
        return self.block_ops.count(ALLREDUCE)


def dense_template(tpu: bool, tp: int) -> OpTemplate:
    """Llama-style block (serving.md §6.2); TPU profiles fold rope into attention."""
    reduce = (ALLREDUCE,) if tp > 1 else ()
    block = ("input_layernorm", "q_proj", "k_proj", "v_proj", *(() if tpu else ("rope",)),
             ATTENTION, "o_proj", *reduce, "post_layernorm", "gate_proj", "up_proj", "act_fn",
             "down_proj", *reduce)
    return OpTemplate(pre_ops=("embedding",), block_ops=block,
                      post_ops=("final_layernorm", "lm_head"))


def memory_access_ns(mem: MemorySpec, nbytes: int) -> int:
    """One access to a memory device: latency + bytes / bandwidth, parameters truncated."""
    return int(mem.latency_ns) + nbytes // max(int(mem.bw_bytes_per_ns), 1)


class IterationTimer:
    """Prices a batch on one instance: closed-form latency of its lockstep op chain."""

    def __init__(self, model: ModelConfig, perf: PerfModel, template: OpTemplate, tp: int,
                 fp: int, host_mem: MemorySpec,
                 allreduce_ns: Callable[[int], int], legacy_output_store: bool = False) -> None:
        if model.is_moe:
            raise InputError(f"model '{model.name}' is a mixture of experts", "model_name",
                             "MoE serving is not available in this version; use a dense model")
        self.model = model
        self.perf = perf
        self.template = template
        self.tp = tp
        self.fp = fp
        self.host_mem = host_mem
        self.allreduce_ns = allreduce_ns
        self.legacy_output_store = legacy_output_store
        self._token_cost: dict[int, int] = {}
        for op in (*template.pre_ops, *template.compute_block_ops, *template.post_ops):
            perf.layer_ns(op, 1)  # fail fast on a table without this operator

    def op_ns(self, op: str, tokens: int, requests: int) -> int:
        """One operator's latency; lm_head runs once per request (serving.md §6.1)."""
        return self.perf.layer_ns(op, requests if op == "lm_head" else tokens)

    def allreduce_bytes(self, tokens: int) -> int:
        """Size of each TP all-reduce: the hidden state of every token."""
        return tokens * self.model.hidden_size * self.fp

    def input_bytes(self, tokens: int) -> int:
        """Input load of one rank from host memory."""
        return tokens * self.fp * 2

    def store_bytes(self, batch: Batch) -> int:
        """Output store: sampled token ids (or the hidden state, like the existing tool)."""
        if self.legacy_output_store:
            return batch.total_tokens * self.model.hidden_size * self.fp
        return len(batch.requests) * OUTPUT_TOKEN_ID_BYTES

    def token_cost_ns(self, tokens: int) -> int:
        """Everything before lm_head that depends only on the token count T (memoized)."""
        cached = self._token_cost.get(tokens)
        if cached is not None:
            return cached
        perf, t = self.perf, self.template
        block = sum(perf.layer_ns(op, tokens) for op in t.compute_block_ops)
        block += t.allreduces_per_block * self.allreduce_ns(self.allreduce_bytes(tokens))
        # Every rank loads its input from the node's host-memory FIFO, one after another.
        load = self.tp * memory_access_ns(self.host_mem, self.input_bytes(tokens))
        cost = (load + sum(perf.layer_ns(op, tokens) for op in t.pre_ops)
                + self.model.num_layers * block
                + sum(perf.layer_ns(op, tokens) for op in t.post_ops if op != "lm_head"))
        self._token_cost[tokens] = cost
        return cost

    @staticmethod
    def attention_batch(batch: Batch) -> AttentionBatch:
        """What attention sees: prefill chunks on their prior KV, decode context lengths."""
        prefill_q: list[int] = []
        prefill_kv: list[int] = []
        decode_lens: list[int] = []
        for request, count, is_decode in zip(batch.requests, batch.tokens, batch.decode,
                                             strict=True):
            if is_decode:
                decode_lens.append(request.num_tokens)
            else:
                prefill_q.append(count)
                prefill_kv.append(request.computed)
        return AttentionBatch(tuple(prefill_q), tuple(prefill_kv), tuple(decode_lens))

    def iteration_ns(self, batch: Batch) -> int:
        """Latency of one iteration of `batch` (integer ns)."""
        attention = self.perf.attention_ns(self.attention_batch(batch))
        memory = self.tp * (memory_access_ns(self.host_mem, self.store_bytes(batch)))
        if batch.swap_in_bytes or batch.swap_out_bytes:
            # Swap traffic shares the host-memory FIFO with the input load; compute waits.
            memory += self.tp * (memory_access_ns(self.host_mem, batch.swap_in_bytes)
                                 + memory_access_ns(self.host_mem, batch.swap_out_bytes))
        return (self.token_cost_ns(batch.total_tokens) + self.model.num_layers * attention
                + self.perf.layer_ns("lm_head", len(batch.requests)) + memory)
