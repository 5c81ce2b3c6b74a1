"""Turns a scheduled batch of an instance into its iteration plans, one per pipeline stage.

Everything that depends only on the token count (operator latencies, expert routing) is
memoized, so building a plan costs a few dict lookups and tuple concatenations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from inference_serving.pim_offload import PimSetup
from inference_serving.pim_plans import offloaded_plan
from inference_serving.scheduler.base import Batch
from inference_serving.weight_loads import WeightLoads
from llm_profile.perf_model import AttentionBatch, PerfModel
from llmsim_core.errors import InputError
from llmsim_core.iteration_plan import (
    HOST,
    LOAD,
    PD_LINK,
    SEND,
    STAGE_LINK,
    STORE,
    IterationPlan,
    LayerGroup,
    PlanOp,
    block_ops,
    compute,
    edge_group,
    slowest_rank_ns,
)
from llmsim_core.model_config import ModelConfig
from llmsim_core.op_templates import ATTENTION, EXPERT_ROWS, OpTemplate

OUTPUT_TOKEN_ID_BYTES = 4
CACHE_LIMIT = 8192  # memoized block plans kept before the cache starts over


@dataclass(frozen=True, slots=True)
class DisaggregationRole:
    """What P/D adds to an instance's iterations (serving.md §6.7, §9).

    A prefill instance sends each layer's K and V to the decode side after `v_proj` and the
    sampled token ids at the end. The fitted overheads apply only when TP > 1:
    +`prefill_oproj_ns` per `o_proj` of a prefill iteration, +`decode_oproj_ns` per decode
    request per `o_proj` on a decode instance (cluster config keys `prefill_oproj_overhead_ns`
    and `decode_oproj_overhead_ns`; 0 turns them off).
    """

    role: str
    receiver_tp: int | None = None
    prefill_oproj_ns: int = 700_000
    decode_oproj_ns: int = 700


@dataclass(frozen=True, slots=True)
class StoreSizes:
    """Sizes of the iteration's last transfers (compatibility: the existing simulator writes
    the hidden state to host memory and hands the whole lm_head output to the decode side)."""

    hidden_state_output_store: bool = False
    whole_logits_handoff: bool = False


def kv_transfer_bytes(model: ModelConfig, tokens: int, tp: int, fp: int,
                      receiver_tp: int | None = None) -> int:
    """Bytes of one prefill→decode message for one layer: K and V of `tokens` tokens,
    2 · tokens · kvd · fp, split over max(sender TP, receiver TP) parallel rank-to-rank links
    (a sender rank's heads go to several receivers, or several senders feed one receiver)."""
    ways = max(tp, receiver_tp or tp)
    return 2 * tokens * (model.kv_dim // ways) * fp


def stage_layers(layers: int, stages: int) -> list[int]:
    """Whole transformer blocks per stage; the remainder goes to the earlier stages."""
    return [layers // stages + (1 if s < layers % stages else 0) for s in range(stages)]


def attention_batch(batch: Batch) -> AttentionBatch:
    """What attention sees: prefill chunks on their prior KV, decode context lengths."""
    lens = batch.decode_lens
    if lens is not None:  # streaming decodes: every prefill is among the eager entries
        assert batch.eager is not None
        if not batch.eager:  # only streaming decodes
            return AttentionBatch((), (), lens)
        prefill = [i for i in batch.eager if not batch.decode[i]]
        return _with_hidden(batch, tuple(batch.tokens[i] for i in prefill),
                            [batch.requests[i].computed for i in prefill], lens)
    if all(batch.decode):  # the common all-decode iteration, in one pass
        return AttentionBatch((), (), tuple([r.num_tokens for r in batch.requests]))
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
    return _with_hidden(batch, tuple(prefill_q), prefill_kv, tuple(decode_lens))


def _with_hidden(batch: Batch, prefill_q: tuple[int, ...], prefill_kv: list[int],
                 decode_lens: Sequence[int]) -> AttentionBatch:
    """The attention batch, prefix-hit tokens the existing simulator hides taken off."""
    if batch.hidden_kv is not None:
        hidden = [h for h, d in zip(batch.hidden_kv, batch.decode, strict=True) if not d]
        prefill_kv = [kv - h for kv, h in zip(prefill_kv, hidden, strict=True)]
    return AttentionBatch(prefill_q, tuple(prefill_kv), decode_lens)


class PlanFamily:
    """A batch's plans as the family they belong to, their attention time and their tail.

    Plans of one `key` are equal but for the ns of their attention nodes (one per transformer
    block) and, in the last stage, the operators after the blocks (their times, as the `tail`
    groups, add up to the plan's group of them: lm_head runs per request) and the output
    `store`. A pricer can therefore time a stage from what it learnt on an earlier member of
    the family (of the same `instance`) without the plan being built; `plans()` builds them
    (once) for whoever needs the nodes.
    """

    __slots__ = ("instance", "key", "attention_ns", "stages", "tail", "store", "_make",
                 "_plans")

    def __init__(self, instance: int, key: tuple, attention_ns: int, stages: int,
                 tail: tuple[LayerGroup, LayerGroup], store: PlanOp,
                 make: Callable[[], list[IterationPlan]]) -> None:
        self.instance = instance
        self.key = key
        self.attention_ns = attention_ns
        self.stages = stages
        self.tail = tail
        self.store = store
        self._make = make
        self._plans: list[IterationPlan] | None = None

    def plans(self) -> list[IterationPlan]:
        """The plans, one per pipeline stage."""
        if self._plans is None:
            self._plans = self._make()
        return self._plans


class PlanBuilder:
    """Builds the iteration plans of one instance (one per pipeline stage)."""

    def __init__(self, instance: int, node: int, model: ModelConfig, perf: PerfModel,
                 template: OpTemplate, tp: int, fp: int, pp: int = 1,
                 disaggregation: DisaggregationRole | None = None,
                 sizes: StoreSizes = StoreSizes(),
                 expert_routing: Callable[..., list] | None = None, seed: int = 42,
                 weights: WeightLoads | None = None, pim: PimSetup | None = None,
                 ep: int | None = None) -> None:
        if template.has_experts and expert_routing is None:
            raise InputError(f"model '{model.name}' is a mixture of experts", "model_name",
                             "pass an expert routing policy")
        self.instance = instance
        self.node = node
        self.model = model
        self.perf = perf
        self.template = template
        self.tp = tp
        self.fp = fp
        self.pd = disaggregation
        self.sizes = sizes
        self.expert_routing = expert_routing
        self.seed = seed
        self.ep = ep or tp
        # A profile that times the whole MoE layer (current layout) prices it per rank by
        # (tokens, activated experts) instead of summing expert rows.
        self._moe_layer_ns = getattr(perf, "moe_layer_ns", None) if template.has_experts \
            else None
        self.weights = weights if weights is not None and weights.active else None
        self.pim = pim
        self.stage_layers = stage_layers(model.num_layers, pp)
        self._experts: dict[int, list[int]] = {}
        self._active: dict[int, list[int]] = {}
        self._blocks: dict[tuple, tuple] = {}
        self._transfers: dict[tuple, PlanOp] = {}
        self._plans: dict[tuple, list[IterationPlan]] = {}
        self._skeletons: dict[tuple, tuple[tuple, ...]] = {}  # plans but attention, by shape
        self._edges: dict[tuple, LayerGroup] = {}
        self._post_by_tokens: dict[int, LayerGroup] = {}
        self._post_by_requests: dict[int, LayerGroup] = {}
        post = template.post_ops
        self._tail_names = (tuple(n for n in post if n != "lm_head"),
                            tuple(n for n in post if n == "lm_head"))
        needed = (*template.pre_ops, *template.compute_block_ops, *template.post_ops,
                  *(EXPERT_ROWS if template.has_experts and self._moe_layer_ns is None
                    else ()))
        for op in needed:
            perf.layer_ns(op, 1)  # fail fast on a table without this operator

    def hidden_bytes(self, tokens: int) -> int:
        """The hidden state of `tokens` tokens: TP collectives and stage-to-stage sends."""
        return tokens * self.model.hidden_size * self.fp

    def experts_per_layer(self, tokens: int) -> list[int]:
        """Each layer's expert time (slowest rank), memoized by token count: routing is a
        pure function of it."""
        cached = self._experts.get(tokens)
        if cached is None:
            m = self.model
            routed = self.expert_routing(tokens, m.num_experts, m.experts_per_token,
                                         m.num_layers, self.seed)
            per_counts: dict[tuple, int] = {}
            cached = []
            active = []
            for counts in routed:
                key = tuple(counts.tolist())
                if key not in per_counts:
                    per_counts[key] = self._moe_ns(tokens, key) if self._moe_layer_ns \
                        else slowest_rank_ns(key, self.tp, self.perf.layer_ns)
                cached.append(per_counts[key])
                # Experts with tokens on the rank that has most of them (offloaded experts).
                active.append(max(sum(1 for n in key[r::self.tp] if n)
                                  for r in range(self.tp)))
            self._experts[tokens] = cached
            self._active[tokens] = active
        return cached

    def _moe_ns(self, tokens: int, counts: tuple[int, ...]) -> int:
        """The slowest expert-parallel rank's MoE layer: its experts that received tokens."""
        return max(self._moe_layer_ns(tokens, sum(1 for c in counts[r::self.ep] if c))
                   for r in range(self.ep))

    def edge(self, which: str, tokens: int, requests: int) -> LayerGroup:
        """The operators before (`pre`) or after (`post`) the blocks, memoized."""
        names = self.template.pre_ops if which == "pre" else self.template.post_ops
        # Only lm_head runs per request: the other edge depends on the token count alone.
        key = (which, tokens, requests if "lm_head" in names else 0)
        group = self._edges.get(key)
        if group is None:
            loads = self.weights.edge() if self.weights is not None else None
            if len(self._edges) >= CACHE_LIMIT:
                self._edges.clear()  # (tokens, requests) pairs are many: memory stays bounded
            group = self._edges[key] = edge_group(names, tokens, requests, self.perf.layer_ns,
                                                  loads)
        return group

    def tail_parts(self, tokens: int, requests: int) -> tuple[LayerGroup, LayerGroup]:
        """The operators after the blocks as two groups whose times add up to
        `edge("post", tokens, requests)`'s: those at the token count and lm_head at the request
        count, each memoized by its count alone (the pairs are too many to keep)."""
        per_token = self._post_by_tokens.get(tokens)
        if per_token is None:
            per_token = self._post_part(self._post_by_tokens, tokens, 0)
        per_request = self._post_by_requests.get(requests)
        if per_request is None:
            per_request = self._post_part(self._post_by_requests, 0, requests)
        return per_token, per_request

    def _post_part(self, cache: dict[int, LayerGroup], tokens: int,
                   requests: int) -> LayerGroup:
        """The post operators that run per token (`requests` 0) or per request (`tokens` 0)."""
        if len(cache) >= CACHE_LIMIT:
            cache.clear()
        names = self._tail_names[0 if requests == 0 else 1]
        group = cache[tokens or requests] = edge_group(names, tokens, requests,
                                                       self.perf.layer_ns)
        return group

    def block_parts(self, tokens: int, first: int, count: int, kv_bytes: int = 0,
                    extra: int = 0) -> tuple[tuple, ...]:
        """Runs of identical blocks as (first layer, count, ops before attention, ops after
        it), memoized by token count."""
        key = (tokens, first, count, kv_bytes, extra)
        parts = self._blocks.get(key)
        if parts is None:
            moe = self.template.has_experts
            experts = self.experts_per_layer(tokens)[first:first + count] if moe \
                else [0] * count
            active = self._active[tokens][first:first + count] if moe else [0] * count
            weights = self.weights
            collective = self.hidden_bytes(tokens)
            runs: list[list] = []
            previous = None
            for index, cost in enumerate(experts, start=first):
                # Consecutive blocks with the same expert time and weight loads are one group.
                shape = (cost, None) if weights is None else \
                    (cost, weights.signature(index), active[index - first])
                if runs and shape == previous:
                    runs[-1][1] += 1
                    continue
                previous = shape
                loads = fetch = None
                if weights is not None:
                    loads = weights.block(index)
                    fetch = weights.expert_fetch(index, active[index - first]) if moe else None
                ops = block_ops(self.template, tokens, self.perf.layer_ns, 0, cost,
                                collective, kv_bytes, extra, loads, fetch)
                at = next(i for i, op in enumerate(ops) if op.name == ATTENTION)
                runs.append([index, 1, ops[:at], ops[at + 1:]])
            parts = tuple(tuple(run) for run in runs)
            if len(self._blocks) >= CACHE_LIMIT:
                self._blocks.clear()
            self._blocks[key] = parts
        return parts

    def start_loads(self, tokens: int, batch: Batch) -> tuple[PlanOp, ...]:
        """The first stage's start transfers: input load, KV swap-in and swap-out (on the
        swap space's tier) and a prefix recall (from the second tier); all gate the chain."""
        return tuple(self._transfer(kind, name, nbytes, target)
                     for kind, name, nbytes, target
                     in ((LOAD, "input_load", tokens * self.fp * 2, HOST),
                         (LOAD, "kv_load", batch.swap_in_bytes, batch.swap_target),
                         (STORE, "kv_evict", batch.swap_out_bytes, batch.swap_target),
                         (LOAD, "prefix_recall", batch.recall_bytes, batch.recall_target))
                     if nbytes or name == "input_load")

    def output_store(self, tokens: int, requests: int) -> PlanOp:
        """The last stage's output store (token ids, or the hidden state under compat)."""
        stored = self.hidden_bytes(tokens) if self.sizes.hidden_state_output_store \
            else requests * OUTPUT_TOKEN_ID_BYTES
        return self._transfer(STORE, "output_store", stored)

    def _transfer(self, kind: str, name: str, nbytes: int, target: str = HOST) -> PlanOp:
        key = (name, nbytes, target)
        op = self._transfers.get(key)
        if op is None:
            if len(self._transfers) >= CACHE_LIMIT:
                self._transfers.clear()
            op = self._transfers[key] = PlanOp(kind, name, nbytes=nbytes, target=target)
        return op

    def plans(self, batch: Batch) -> list[IterationPlan]:
        """The plans of `batch`, one per pipeline stage."""
        if self.pim is not None and any(batch.decode):
            return [offloaded_plan(self, batch)]
        tokens, requests = batch.total_tokens, len(batch.requests)
        attention, kv_bytes, extra, handoff = self._inputs(batch, tokens, requests)
        if batch.decode_lens is not None:  # streaming decodes: attention is new every time
            return self._build(tokens, requests, attention, kv_bytes, extra, handoff, batch)
        # Plans are immutable: a batch with the same shape gets the same objects back.
        key = (tokens, requests, attention, kv_bytes, extra, batch.swap_in_bytes,
               batch.swap_out_bytes, batch.recall_bytes, batch.swap_target, batch.recall_target)
        cached = self._plans.get(key)
        if cached is not None:
            return cached
        plans = self._build(tokens, requests, attention, kv_bytes, extra, handoff, batch)
        if len(self._plans) >= CACHE_LIMIT:
            self._plans.clear()
        self._plans[key] = plans
        return plans

    def family(self, batch: Batch) -> PlanFamily | None:
        """The plans of a streaming batch as their family, built only if asked for; None
        where plans of one family could differ in more (PIM offload, weight loads) or the
        batch's plans are cached whole."""
        if batch.decode_lens is None or self.weights is not None or \
                (self.pim is not None and any(batch.decode)):
            return None
        tokens, requests = batch.total_tokens, len(batch.requests)
        attention, kv_bytes, extra, handoff = self._inputs(batch, tokens, requests)
        key = (tokens, kv_bytes, extra, handoff, batch.swap_in_bytes,
               batch.swap_out_bytes, batch.recall_bytes, batch.swap_target, batch.recall_target)
        return PlanFamily(self.instance, key, attention, len(self.stage_layers),
                          self.tail_parts(tokens, requests),
                          self.output_store(tokens, requests),
                          partial(self._build, tokens, requests, attention, kv_bytes, extra,
                                  handoff, batch))

    def _inputs(self, batch: Batch, tokens: int,
                requests: int) -> tuple[int, int, int, PlanOp | None]:
        """What a batch's plans hold besides its shape: (attention ns, P/D KV bytes per layer,
        fitted o_proj overhead, P/D token hand-off)."""
        attention = self.perf.attention_ns(attention_batch(batch))
        kv_bytes = extra = 0
        handoff = None
        pd = self.pd
        if pd is not None and pd.role == "prefill":
            prompt = sum(n for n, d in zip(batch.tokens, batch.decode, strict=True) if not d)
            kv_bytes = kv_transfer_bytes(self.model, prompt, self.tp, self.fp, pd.receiver_tp)
            extra = pd.prefill_oproj_ns if self.tp > 1 else 0
            final = tokens * (self.model.vocab_size // self.tp) * self.fp \
                if self.sizes.whole_logits_handoff else requests * OUTPUT_TOKEN_ID_BYTES
            handoff = PlanOp(SEND, "token_handoff", nbytes=final, target=PD_LINK)
        elif pd is not None and self.tp > 1:
            extra = pd.decode_oproj_ns * sum(batch.decode)
        return attention, kv_bytes, extra, handoff

    def _build(self, tokens: int, requests: int, attention: int, kv_bytes: int, extra: int,
               handoff: PlanOp | None, batch: Batch) -> list[IterationPlan]:
        key = (tokens, kv_bytes, extra, batch.swap_in_bytes, batch.swap_out_bytes,
               batch.recall_bytes, batch.swap_target, batch.recall_target)
        skeleton = self._skeletons.get(key)
        if skeleton is None:
            skeleton = self._skeleton(tokens, kv_bytes, extra, batch)
            if len(self._skeletons) >= CACHE_LIMIT:
                self._skeletons.clear()
            self._skeletons[key] = skeleton
        attn = compute(ATTENTION, attention, tokens)
        weighted = self.weights is not None
        last = len(skeleton) - 1
        plans = []
        for stage, head, parts, loads, receive, forward in skeleton:
            tail: tuple[LayerGroup, ...] = ()
            store = final = None
            if stage == last:  # the per-request operators: lm_head and the output store
                tail = (self.edge("post", tokens, requests),)
                store, final = self.output_store(tokens, requests), handoff
            groups = (*head, *[LayerGroup(index, n, (*before, attn, *after))
                               for index, n, before, after in parts], *tail)
            plans.append(IterationPlan(self.instance, stage, self.node, self.tp, tokens,
                                       requests, loads, groups, receive, store, final, forward,
                                       weighted))
        return plans

    def _skeleton(self, tokens: int, kv_bytes: int, extra: int,
                  batch: Batch) -> tuple[tuple, ...]:
        """What a batch shape's stage plans hold but attention and the per-request operators,
        per stage: (stage, groups before the blocks, block runs, loads, receive, forward)."""
        stages = len(self.stage_layers)
        skeleton = []
        first = 0
        for stage, count in enumerate(self.stage_layers):
            parts = self.block_parts(tokens, first, count, kv_bytes, extra)
            head: tuple[LayerGroup, ...] = ()
            loads: tuple[PlanOp, ...] = ()
            receive = forward = None
            if stage == 0:
                head = (self.edge("pre", tokens, 0),)
                loads = self.start_loads(tokens, batch)
            else:
                receive = PlanOp(SEND, "stage_recv", nbytes=self.hidden_bytes(tokens),
                                 target=STAGE_LINK)
            if stage < stages - 1:
                forward = PlanOp(SEND, "stage_send", nbytes=self.hidden_bytes(tokens),
                                 target=STAGE_LINK)
            skeleton.append((stage, head, parts, loads, receive, forward))
            first += count
        return tuple(skeleton)

