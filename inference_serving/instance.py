"""A serving instance: one model replica with its scheduler, KV pool and iteration timer."""

from __future__ import annotations

from dataclasses import dataclass, field

from inference_serving.cluster_config import InstanceSpec
from inference_serving.iteration import IterationTimer
from inference_serving.kv_cache import KVCacheManager
from inference_serving.memory_model import KvBudget
from inference_serving.model_config import ModelConfig
from inference_serving.request import Request
from inference_serving.scheduler.base import Batch, Scheduler


@dataclass(slots=True)
class Instance:
    """Runtime state of one instance (at most one batch in flight: one pipeline stage)."""

    spec: InstanceSpec
    model: ModelConfig
    scheduler: Scheduler
    kv: KVCacheManager
    budget: KvBudget
    timer: IterationTimer
    in_flight: Batch | None = None
    last_batch: Batch | None = None
    completed: list[Request] = field(default_factory=list)
    busy_ns: int = 0

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
