"""Per-iteration timing: the instance's op template is built once, each batch only prices it.

Every TP rank of a dense instance runs the same chain (input load, embedding, L identical
blocks with their all-reduces, final norm, lm_head, output store), so the ranks stay in
lockstep and the iteration latency is the closed-form sum of the chain (engine.md §11).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from inference_serving.cluster_config import MemorySpec
from inference_serving.scheduler.base import Batch
from llm_profile.perf_model import AttentionBatch, PerfModel
from llmsim_core.errors import InputError
from llmsim_core.model_config import ModelConfig
from llmsim_core.op_templates import (
    ATTENTION,
    COLLECTIVE_KIND,
    EXPERT_ROWS,
    EXPERTS,
    MARKERS,
    OpTemplate,
)

OUTPUT_TOKEN_ID_BYTES = 4


@dataclass(frozen=True, slots=True)
class DisaggregationRole:
    """What P/D adds to an instance's iterations (serving.md §6.7, §9).

    A prefill instance sends each layer's K and V to the decode side after `v_proj` (sends
    share the rank's communication slot with all-reduces and overlap compute) and the sampled
    token ids at the end; `send_ns` times a transfer of so many bytes. The fitted overheads
    apply only when TP > 1: +`prefill_oproj_ns` per `o_proj` of a prefill iteration,
    +`decode_oproj_ns` per decode request per `o_proj` on a decode instance.
    """

    role: str
    send_ns: Callable[[int], int] = lambda nbytes: 0
    receiver_tp: int | None = None
    prefill_oproj_ns: int = 700_000
    decode_oproj_ns: int = 700


def kv_transfer_bytes(model: ModelConfig, tokens: int, tp: int, fp: int,
                      receiver_tp: int | None = None) -> int:
    """Bytes of one prefill→decode message for one layer: K and V of `tokens` tokens,
    2 · tokens · kvd · fp, split over max(sender TP, receiver TP) parallel rank-to-rank links
    (a sender rank's heads go to several receivers, or several senders feed one receiver)."""
    ways = max(tp, receiver_tp or tp)
    return 2 * tokens * (model.kv_dim // ways) * fp


def memory_access_ns(mem: MemorySpec, nbytes: int) -> int:
    """One access to a memory device: latency + bytes / bandwidth, parameters truncated."""
    return int(mem.latency_ns) + nbytes // max(int(mem.bw_bytes_per_ns), 1)


class IterationTimer:
    """Prices a batch on one instance: closed-form latency of its lockstep op chain."""

    def __init__(self, model: ModelConfig, perf: PerfModel, template: OpTemplate, tp: int,
                 fp: int, host_mem: MemorySpec,
                 collective_ns: Callable[[str, int], int], legacy_output_store: bool = False,
                 disaggregation: DisaggregationRole | None = None, pp: int = 1,
                 p2p_ns: Callable[[int], int] = lambda nbytes: 0,
                 expert_routing: Callable[..., list] | None = None, seed: int = 42) -> None:
        if template.has_experts and expert_routing is None:
            raise InputError(f"model '{model.name}' is a mixture of experts", "model_name",
                             "pass an expert routing policy")
        self.model = model
        self.expert_routing = expert_routing
        self.seed = seed
        self._experts: dict[int, int] = {}
        self.perf = perf
        self.template = template
        self.tp = tp
        self.fp = fp
        self.host_mem = host_mem
        self.collective_ns = collective_ns
        self.legacy_output_store = legacy_output_store
        self.pd = disaggregation
        self.pp = pp
        self.p2p_ns = p2p_ns
        layers, stages = model.num_layers, pp
        # Whole transformer blocks per stage; the remainder goes to the stages before the last.
        self.stage_layers = [layers // stages + (1 if s < layers % stages else 0)
                             for s in range(stages)]
        self._token_cost: dict[int, int] = {}
        needed = (*template.pre_ops, *template.compute_block_ops, *template.post_ops,
                  *(EXPERT_ROWS if template.has_experts else ()))
        for op in needed:
            perf.layer_ns(op, 1)  # fail fast on a table without this operator

    def op_ns(self, op: str, tokens: int, requests: int) -> int:
        """One operator's latency; lm_head runs once per request (serving.md §6.1)."""
        return self.perf.layer_ns(op, requests if op == "lm_head" else tokens)

    def collective_bytes(self, tokens: int) -> int:
        """Size of each TP collective: the hidden state of every token."""
        return tokens * self.model.hidden_size * self.fp

    def block_collectives_ns(self, tokens: int) -> int:
        """All TP collectives of one block."""
        nbytes = self.collective_bytes(tokens)
        return sum(self.collective_ns(COLLECTIVE_KIND[op], nbytes)
                   for op in self.template.collectives)

    def experts_ns(self, tokens: int) -> int:
        """Expert rows of all layers (memoized by token count: routing depends only on it).

        Expert e lives on rank e mod tp; a rank runs its experts' w1, w3 and w2 rows in turn
        (an expert with no token still costs one token), and a layer waits for the slowest
        rank."""
        if not self.template.has_experts:
            return 0
        cached = self._experts.get(tokens)
        if cached is not None:
            return cached
        m = self.model
        per_layer = self.expert_routing(tokens, m.num_experts, m.experts_per_token,
                                        m.num_layers, self.seed)
        row_cost: dict[int, int] = {}
        total = 0
        for counts in per_layer:
            ranks = [0] * self.tp
            for expert, n in enumerate(counts.tolist()):
                n = max(n, 1)
                cost = row_cost.get(n)
                if cost is None:
                    cost = sum(self.perf.layer_ns(row, n) for row in EXPERT_ROWS)
                    row_cost[n] = cost
                ranks[expert % self.tp] += cost
            total += max(ranks)
        self._experts[tokens] = total
        return total

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
        block += self.block_collectives_ns(tokens)
        # Every rank loads its input from the node's host-memory FIFO, one after another.
        load = self.tp * memory_access_ns(self.host_mem, self.input_bytes(tokens))
        cost = (load + sum(perf.layer_ns(op, tokens) for op in t.pre_ops)
                + self.model.num_layers * block + self.experts_ns(tokens)
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
        if self.pd is not None and self.pd.role == "prefill":
            return self._prefill_iteration_ns(batch)
        latency = self._colocated_ns(batch)
        if self.pd is not None and self.tp > 1:
            latency += self.model.num_layers * self.pd.decode_oproj_ns * sum(batch.decode)
        return latency

    def stage_ns(self, batch: Batch) -> list[int]:
        """Busy time of each pipeline stage for `batch` (one entry without pipelining)."""
        if self.pp == 1:
            return [self.iteration_ns(batch)]
        tokens, requests = batch.total_tokens, len(batch.requests)
        perf, t = self.perf, self.template
        layer = (sum(perf.layer_ns(op, tokens) for op in t.compute_block_ops)
                 + self.block_collectives_ns(tokens)
                 + perf.attention_ns(self.attention_batch(batch))
                 + self.experts_ns(tokens) // self.model.num_layers)
        if self.pd is not None and self.tp > 1:
            layer += self.pd.decode_oproj_ns * sum(batch.decode)
        stages = [n * layer for n in self.stage_layers]
        stages[0] += (self.tp * memory_access_ns(self.host_mem, self.input_bytes(tokens))
                      + self._swap_ns(batch) + sum(perf.layer_ns(op, tokens) for op in t.pre_ops))
        stages[-1] += (sum(self.op_ns(op, tokens, requests) for op in t.post_ops)
                       + self._store_ns(batch))
        return stages

    def stage_send_ns(self, batch: Batch) -> int:
        """Activation transfer between consecutive stages: the hidden state of every token."""
        return self.p2p_ns(batch.total_tokens * self.model.hidden_size * self.fp)

    def _swap_ns(self, batch: Batch) -> int:
        """Swap traffic of all ranks; it shares the host-memory FIFO and compute waits for it."""
        if not (batch.swap_in_bytes or batch.swap_out_bytes):
            return 0
        return self.tp * (memory_access_ns(self.host_mem, batch.swap_in_bytes)
                          + memory_access_ns(self.host_mem, batch.swap_out_bytes))

    def _store_ns(self, batch: Batch) -> int:
        return self.tp * memory_access_ns(self.host_mem, self.store_bytes(batch))

    def _prefill_iteration_ns(self, batch: Batch) -> int:
        """Layer-by-layer: KV sends after v_proj share the comm slot with the all-reduces."""
        pd, perf = self.pd, self.perf
        tokens, requests = batch.total_tokens, len(batch.requests)
        prompt_tokens = sum(n for n, d in zip(batch.tokens, batch.decode, strict=True) if not d)
        layer_send = pd.send_ns(kv_transfer_bytes(self.model, prompt_tokens, self.tp, self.fp,
                                                  pd.receiver_tp))
        attention = perf.attention_ns(self.attention_batch(batch))
        collective = {op: self.collective_ns(kind, self.collective_bytes(tokens))
                      for op, kind in COLLECTIVE_KIND.items()}
        experts = self.experts_ns(tokens) // self.model.num_layers
        oproj_extra = pd.prefill_oproj_ns if self.tp > 1 else 0
        load = self.tp * memory_access_ns(self.host_mem, self.input_bytes(tokens))
        t = load + self._swap_ns(batch) + sum(perf.layer_ns(op, tokens)
                                              for op in self.template.pre_ops)
        comm_free = t
        block = [(op, 0 if op in MARKERS else perf.layer_ns(op, tokens))
                 for op in self.template.block_ops]
        for _ in range(self.model.num_layers):
            for op, duration in block:
                if op in collective:
                    t = max(t, comm_free) + collective[op]
                    comm_free = t
                    continue
                t += attention if op == ATTENTION else experts if op == EXPERTS else duration
                if op == "o_proj":
                    t += oproj_extra
                elif op == "v_proj":
                    comm_free = max(t, comm_free) + layer_send
        for op in self.template.post_ops:
            t += self.op_ns(op, tokens, requests)
        # The decode side only needs the sampled token ids (4 bytes per request); the existing
        # simulator sends the whole lm_head output (kept with the legacy output store).
        final = tokens * (self.model.vocab_size // self.tp) * self.fp \
            if self.legacy_output_store else requests * OUTPUT_TOKEN_ID_BYTES
        comm_free = max(t, comm_free) + pd.send_ns(final)
        return max(t + self._store_ns(batch), comm_free)

    def _colocated_ns(self, batch: Batch) -> int:
        attention = self.perf.attention_ns(self.attention_batch(batch))
        return (self.token_cost_ns(batch.total_tokens) + self.model.num_layers * attention
                + self.perf.layer_ns("lm_head", len(batch.requests)) + self._store_ns(batch)
                + self._swap_ns(batch))
