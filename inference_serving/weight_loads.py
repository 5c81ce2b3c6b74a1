"""Per-iteration weight loads of an instance (serving.md §6.6, §7, §12).

An operator whose weights are placed on host (`cpu`) or CXL memory loads its per-NPU weight
bytes from there every iteration: a prefetch issued at the iteration's start, awaited by the
operator. With `--enable-local-offloading` the operators whose weights stay on the device also
read them, from device memory (no queue). MoE experts placed off the device are fetched once the
router `gate` has run, and only the experts the iteration activates on the rank that loads most.
"""

from __future__ import annotations

from inference_serving.memory_model import expert_weight_bytes, op_weight_bytes
from inference_serving.placement import EDGE_BLOCK, NPU, WeightMap
from llmsim_core.iteration_plan import (
    FETCH,
    HOST,
    LOCAL_MEM,
    PREFETCH,
    PlanOp,
)
from llmsim_core.model_config import ModelConfig


def tier_of(location: str, local_offloading: bool) -> str | None:
    """The plan tier a weight location is read from (None: not timed)."""
    if location == NPU:
        return LOCAL_MEM if local_offloading else None
    return HOST if location == "cpu" else location


class WeightLoads:
    """The weight-load plan nodes of one instance, memoized per block placement."""

    def __init__(self, model: ModelConfig, tp: int, fp: int, weights: WeightMap | None,
                 local_offloading: bool) -> None:
        self.weights = weights or WeightMap(NPU, None, {})
        self.local = local_offloading
        self.op_bytes = op_weight_bytes(model, tp, fp)
        self.expert_bytes = expert_weight_bytes(model, fp)
        self.active = local_offloading or self.weights.offloaded
        self._blocks: dict[tuple, dict[str, PlanOp]] = {}

    def _loads(self, block: int) -> dict[str, PlanOp]:
        key = self.signature(block)
        loads = self._blocks.get(key)
        if loads is None:
            loads = {}
            for op, nbytes in self.op_bytes.items():
                if op == "expert" or (op in ("embedding", "final_layernorm", "lm_head")) != \
                        (block == EDGE_BLOCK):
                    continue
                tier = tier_of(self.weights.of(op, block), self.local)
                if tier is not None and nbytes:
                    loads[op] = PlanOp(PREFETCH, f"{op}.weights", nbytes=nbytes, target=tier)
            self._blocks[key] = loads
        return loads

    def signature(self, block: int) -> tuple:
        """What distinguishes one block's loads from another's (equal: same loads)."""
        if self.weights.per_block is None or block == EDGE_BLOCK:
            return (block == EDGE_BLOCK,)
        return (False, self.weights.per_block[block])

    def block(self, block: int) -> dict[str, PlanOp]:
        """Prefetches of one transformer block's operators, by operator name."""
        return self._loads(block)

    def edge(self) -> dict[str, PlanOp]:
        """Prefetches of embedding, final norm and lm_head."""
        return self._loads(EDGE_BLOCK)

    def expert_fetch(self, block: int, experts: int) -> PlanOp | None:
        """The fetch of `experts` activated experts' weights of one block, if timed."""
        tier = tier_of(self.weights.of("expert", block), self.local)
        if tier is None or not experts:
            return None
        return PlanOp(FETCH, "expert.weights", nbytes=experts * self.expert_bytes, target=tier)
