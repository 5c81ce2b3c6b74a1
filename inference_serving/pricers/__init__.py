"""Pricers, chosen by name (`--pricer`): each turns an iteration plan into its cost."""

from __future__ import annotations

from collections.abc import Callable

from astra_sim.binary import AstraBinary
from inference_serving.fabric import InstanceFabric
from inference_serving.pricers.base import Pricer
from inference_serving.pricers.closed_form import ClosedFormPricer
from inference_serving.pricers.external import ExternalPricer
from inference_serving.pricers.replay import ReplayPricer

PricerFactory = Callable[[dict[int, InstanceFabric], int, AstraBinary | None], Pricer]

PRICERS: dict[str, PricerFactory] = {
    "closed-form": lambda fabrics, nodes, binary: ClosedFormPricer(fabrics),
    "replay": lambda fabrics, nodes, binary: ReplayPricer(fabrics, nodes),
    "external": lambda fabrics, nodes, binary: ExternalPricer(fabrics, nodes, binary),
}

__all__ = ["PRICERS", "ClosedFormPricer", "ExternalPricer", "Pricer", "ReplayPricer"]
