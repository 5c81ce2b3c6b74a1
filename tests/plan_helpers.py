"""Test doubles for pricing plans: a fabric with fixed message times and free memory."""

from __future__ import annotations

from types import SimpleNamespace

from inference_serving.plan_builder import PlanBuilder
from inference_serving.pricers import ClosedFormPricer
from inference_serving.scheduler.base import Batch


class StubFabric:
    """Every collective `collective` ns, every send `send` ns, memory free."""

    aware = False

    def __init__(self, collective: int = 0, send: int = 0, memory: int = 0) -> None:
        self.collective, self.send, self.memory = collective, send, memory
        self.spec = SimpleNamespace(first_npu=0, instance_id=0)

    def collective_ns(self, kind: str, nbytes: int) -> int:
        return self.collective

    def send_ns(self, link: str, nbytes: int) -> int:
        return self.send

    def memory_ns(self, tier: str, nbytes: int) -> int:
        return self.memory

    def memory_fifo(self, tier: str, node: int) -> tuple[str, int]:
        return (tier, node)

    def link_name(self, link: str) -> str:
        return f"{link}:0"


def stage_costs(builder: PlanBuilder, batch: Batch, fabric: StubFabric | None = None) -> list:
    """Closed-form cost of every stage plan of `batch`."""
    pricer = ClosedFormPricer({builder.instance: fabric or StubFabric()})
    return [pricer.price(plan, 0) for plan in builder.plans(batch)]


def iteration_ns(builder: PlanBuilder, batch: Batch, fabric: StubFabric | None = None) -> int:
    """Closed-form duration of a single-stage iteration."""
    (cost,) = stage_costs(builder, batch, fabric)
    return cost.duration_ns
