"""Request routers: pick the instance that serves an arriving request."""

from __future__ import annotations

import random
from typing import Protocol

from inference_serving.errors import InputError
from inference_serving.request import Request


class Router(Protocol):
    """Chooses an instance index among `candidates` for a request at its arrival."""

    def route(self, request: Request, candidates: list[int]) -> int:
        """Return the chosen instance index (one of `candidates`)."""
        ...


class RoundRobinRouter:
    """The n-th routed request goes to candidate n mod P."""

    def __init__(self, seed: int) -> None:
        self.count = 0

    def route(self, request: Request, candidates: list[int]) -> int:
        """Next candidate in turn."""
        choice = candidates[self.count % len(candidates)]
        self.count += 1
        return choice


class RandomRouter:
    """Uniform choice from one seeded stream (seed 42 by default, like the existing tool)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def route(self, request: Request, candidates: list[int]) -> int:
        """A seeded uniform pick."""
        return candidates[self.rng.randrange(len(candidates))]


ROUTERS: dict[str, type] = {"RR": RoundRobinRouter, "RAND": RandomRouter}


def make_router(name: str, seed: int) -> Router:
    """Build the router registered under `name`."""
    cls = ROUTERS.get(name)
    if cls is None:
        raise InputError(f"unknown request routing policy '{name}'", "--request-routing-policy",
                         f"use one of {', '.join(ROUTERS)}")
    return cls(seed)
