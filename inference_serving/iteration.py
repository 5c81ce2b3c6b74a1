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
OUTPUT_TOKEN_ID_BYTES = 4


@dataclass(frozen=True, slots=True)
class OpTemplate:
    """The operator sequence of one transformer block, with a collective after some ops."""

    block_ops: tuple[str, ...]
    pre_ops: tuple[str, ...]
    post_ops: tuple[str, ...]
    allreduces_per_block: int


def dense_template(tpu: bool, tp: int) -> OpTemplate:
    """Llama-style block (serving.md §6.2); TPU profiles fold rope into attention."""
    block = ["input_layernorm", "q_proj", "k_proj", "v_proj"]
    if not tpu:
        block.append("rope")
    block += ["o_proj", "post_layernorm", "gate_proj", "up_proj", "act_fn", "down_proj"]
    return OpTemplate(block_ops=tuple(block), pre_ops=("embedding",),
                      post_ops=("final_layernorm",), allreduces_per_block=2 if tp > 1 else 0)


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
        for op in (*template.pre_ops, *template.block_ops, *template.post_ops, "lm_head"):
            perf.layer_ns(op, 1)  # fail fast on a table without this operator

    def token_cost_ns(self, tokens: int) -> int:
        """Everything that depends only on the batch's token count T (memoized by T)."""
        cached = self._token_cost.get(tokens)
        if cached is not None:
            return cached
        perf = self.perf
        t = self.template
        block = sum(perf.layer_ns(op, tokens) for op in t.block_ops)
        if t.allreduces_per_block:
            block += t.allreduces_per_block * self.allreduce_ns(tokens * self.model.hidden_size
                                                                * self.fp)
        # Every rank loads its input from the node's host-memory FIFO, one after another.
        load = self.tp * memory_access_ns(self.host_mem, tokens * self.fp * 2)
        cost = (load + sum(perf.layer_ns(op, tokens) for op in t.pre_ops)
                + self.model.num_layers * block
                + sum(perf.layer_ns(op, tokens) for op in t.post_ops))
        self._token_cost[tokens] = cost
        return cost

    def iteration_ns(self, batch: Batch) -> int:
        """Latency of one iteration of `batch` (integer ns)."""
        tokens = batch.total_tokens
        num_requests = len(batch.requests)
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
        attention = self.perf.attention_ns(
            AttentionBatch(tuple(prefill_q), tuple(prefill_kv), tuple(decode_lens)))
        store_bytes = (tokens * self.model.hidden_size * self.fp if self.legacy_output_store
                       else num_requests * OUTPUT_TOKEN_ID_BYTES)
        store = self.tp * memory_access_ns(self.host_mem, store_bytes)
        if batch.swap_in_bytes or batch.swap_out_bytes:
            # Swap traffic shares the host-memory FIFO with the input load; compute waits.
            store += self.tp * (memory_access_ns(self.host_mem, batch.swap_in_bytes)
                                + memory_access_ns(self.host_mem, batch.swap_out_bytes))
        return (self.token_cost_ns(tokens) + self.model.num_layers * attention
                + self.perf.layer_ns("lm_head", num_requests) + store)
