"""Observers of the serving loop: every output (console, files, the API's results) is one."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inference_serving.instance import Instance
    from inference_serving.iteration_cost import IterationCost
    from inference_serving.request import Request
    from inference_serving.scheduler.base import Batch
    from inference_serving.simulator import SimResult

# on_request's event names, in the order a request can meet them.
REQUEST_EVENTS = ("arrival", "routed", "first_token", "handoff", "preempted", "finished")


class Observer:
    """Receives the loop's events; every hook does nothing unless a subclass overrides it."""

    def on_batch_start(self, inst: Instance, batch: Batch, start_ns: int, end_ns: int,
                       costs: list[IterationCost]) -> None:
        """A batch entered `inst` at `start_ns` and completes at `end_ns`; `costs` holds the
        pricer's cost of each pipeline stage (one entry without pipelining)."""

    def on_batch_end(self, inst: Instance, batch: Batch, end_ns: int,
                     finished: list[Request]) -> None:
        """A batch of `inst` completed; `finished` are the requests it completed."""

    def on_request(self, event: str, request: Request, time_ns: int, instance: int) -> None:
        """One of REQUEST_EVENTS happened to `request` on instance `instance` (-1: none yet)."""

    def on_window(self, time_ns: int, rates: tuple[float, float]) -> None:
        """A log window closed at `time_ns` with (prompt, generation) rates in tokens/s."""

    def on_finish(self, result: SimResult) -> None:
        """The run completed; `result` holds the final state."""


def hooks(observers: list[Observer], name: str) -> list:
    """The bound `name` hooks of the observers that override it, so idle hooks cost nothing."""
    default = getattr(Observer, name)
    return [getattr(o, name) for o in observers if getattr(type(o), name) is not default]
