"""Request routers: pick the instance that serves a request when it arrives."""

from __future__ import annotations

import importlib
import random
from typing import Protocol

from inference_serving.instance import Instance
from inference_serving.request import Request
from llmsim_core.errors import InputError


class Router(Protocol):
    """Chooses one of `candidates` for `request` at its arrival time."""

    def route(self, request: Request, candidates: list[Instance]) -> Instance:
        """Return the chosen instance."""
        ...


class RoundRobinRouter:
    """The n-th routed request goes to candidate n mod P."""

    def __init__(self, seed: int) -> None:
        self.count = 0

    def route(self, request: Request, candidates: list[Instance]) -> Instance:
        """Next candidate in turn."""
        choice = candidates[self.count % len(candidates)]
        self.count += 1
        return choice


class RandomRouter:
    """Uniform choice from one seeded stream (seed 42 by default, like the existing tool)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def route(self, request: Request, candidates: list[Instance]) -> Instance:
        """A seeded uniform pick."""
        return candidates[self.rng.randrange(len(candidates))]


class LeastLoadRouter:
    """The candidate with the least outstanding work (queued + running tokens); ties to the
    lowest instance id."""

    def __init__(self, seed: int) -> None:
        pass

    def route(self, request: Request, candidates: list[Instance]) -> Instance:
        """Least outstanding tokens first."""
        return min(candidates, key=lambda inst: (inst.outstanding_tokens(), inst.index))


ROUTERS: dict[str, type] = {"RR": RoundRobinRouter, "RAND": RandomRouter,
                            "LOAD": LeastLoadRouter}


def load_custom_router(spec: str, seed: int) -> Router:
    """Instantiate `pkg.module:Class` (constructor takes the seed) as a router."""
    module_name, _, class_name = spec.partition(":")
    where = f"--custom-router {spec}"
    if not module_name or not class_name:
        raise InputError("expected the form package.module:Class", where, "fix the flag")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise InputError(f"cannot load the router ({exc})", where,
                         "check the module is importable from the working directory") from None
    router = cls(seed)
    if not callable(getattr(router, "route", None)):
        raise InputError(f"{class_name} has no route(request, candidates) method", where,
                         "implement the Router interface of inference_serving/router.py")
    return router


def make_router(name: str, seed: int, custom: str | None = None) -> Router:
    """Build the router registered under `name` (`CUSTOM` loads `custom`)."""
    if name == "CUSTOM":
        if not custom:
            raise InputError("CUSTOM routing needs a router class", "--request-routing-policy",
                             "pass --custom-router package.module:Class")
        return load_custom_router(custom, seed)
    cls = ROUTERS.get(name)
    if cls is None:
        raise InputError(f"unknown request routing policy '{name}'", "--request-routing-policy",
                         f"use one of {', '.join([*ROUTERS, 'CUSTOM'])}")
    return cls(seed)
