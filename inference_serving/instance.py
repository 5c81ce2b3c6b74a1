"""A serving instance: one model replica with its scheduler, KV pool and iteration timer."""

from __future__ import annotations

from dataclasses import dataclass, field

from inference_serving.cluster_config import InstanceSpec
from inference_serving.iteration import IterationTimer
from inference_serving.kv_cache import KVCacheManager
from inference_serving.memory_model import KvBudget
from inference_serving.request import Request
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
    timer: IterationTimer
    in_flight: list[Batch] = field(default_factory=list)
    completed: list[Request] = field(default_factory=list)
    stage_free: list[int] = field(default_factory=lambda: [0])

    def pipeline(self, batch: Batch, now: int) -> tuple[int, int]:
        """Run `batch` through the pipeline stages from `now`: (first stage end, last end).

        Stage s starts when the previous stage's output has arrived and stage s is free.
        """
        stages = self.timer.stage_ns(batch)
        if len(self.stage_free) != len(stages):
            self.stage_free = [0] * len(stages)
        send = self.timer.stage_send_ns(batch)
        t = now
        for s, duration in enumerate(stages):
            start = max(t + (send if s else 0), self.stage_free[s])
            t = start + duration
            self.stage_free[s] = t
        return self.stage_free[0], t

    @property
    def index(self) -> int:
        """Global instance id."""
        return self.spec.instance_id

    def outstanding_tokens(self) -> int:
        """Work left on this instance: uncomputed prompt tokens plus tokens still to generate."""
        return sum(r.num_tokens - r.computed + r.output - r.generated
                   for r in self.scheduler.requests())

    def host_used_bytes(self) -> int:
        """Host memory this instance holds (swapped-out KV, whole-instance bytes)."""
        return self.scheduler.host_bytes

    def memory_used_bytes(self) -> int:
        """Device memory in use on one NPU: weights + allocated KV blocks."""
        return self.budget.weight_bytes + self.kv.used_blocks * self.budget.block_bytes
