"""A serving instance: one model replica with its scheduler, KV pool, plan builder and pricer."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

from inference_serving.cluster_config import InstanceSpec
from inference_serving.fabric import InstanceFabric
from inference_serving.iteration_cost import IterationCost
from inference_serving.kv import KVCacheManager
from inference_serving.memory_model import KvBudget
from inference_serving.plan_builder import PlanBuilder
from inference_serving.pricers import Pricer
from inference_serving.scheduler.base import Batch, Scheduler
from llmsim_core.model_config import ModelConfig


@dataclass(slots=True)
class Instance:
    """Runtime state of one instance: up to `pp` batches in flight, one per pipeline stage."""

    spec: InstanceSpec
    model: ModelConfig
    scheduler: Scheduler
    kv: KVCacheManager
    budget: KvBudget
    plans: PlanBuilder
    fabric: InstanceFabric
    pricer: Pricer | None = None
    in_flight: list[Batch] = field(default_factory=list)
    completed: int = 0  # requests finished here (their numbers live in the fleet samples)
    stage_free: list[int] = field(default_factory=lambda: [0])
    # KV memory figures per log window (prefix caching or swap preemption on), else None.
    kv_series: list[dict] | None = None
    # KV blocks in use at each window end (int64: a long run closes many windows).
    kv_samples: array = field(default_factory=lambda: array("q"))

    def pipeline(self, batch: Batch, now: int) -> tuple[int, int, list[IterationCost]]:
        """Run `batch` through the pipeline stages from `now`: (first stage end, last end, the
        cost of every stage).

        Stage s starts when the previous stage's activations have arrived and stage s is free.
        """
        # A pricer that times a plan family's members without their plans is spared building
        # them (streaming batches: a new plan every iteration, new only in attention).
        by_family = getattr(self.pricer, "price_family", None)
        family = self.plans.family(batch) if by_family is not None else None
        if family is None:
            plans = self.plans.plans(batch)
            stages = len(plans)
        else:
            stages = family.stages
        if len(self.stage_free) != stages:
            self.stage_free = [0] * stages
        t, forward = now, 0
        costs = []
        for s in range(stages):
            start = max(t + forward, self.stage_free[s])
            cost = self.pricer.price(plans[s], start) if family is None else \
                by_family(family, s, start)
            t = start + cost.duration_ns
            forward = cost.forward_ns
            self.stage_free[s] = t
            costs.append(cost)
        return self.stage_free[0], t, costs

    @property
    def index(self) -> int:
        """Global instance id."""
        return self.spec.instance_id

    def outstanding_tokens(self) -> int:
        """Work left on this instance: uncomputed prompt tokens plus tokens still to generate."""
        return sum(r.num_tokens - r.computed + r.output - r.generated
                   for r in self.scheduler.requests())

    def memory_used_bytes(self) -> int:
        """Device memory in use on one NPU: weights + allocated KV blocks."""
        return self.budget.weight_bytes + self.kv.used_blocks * self.budget.block_bytes
