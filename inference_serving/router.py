"""Request routers: pick the instance that serves a request when it arrives."""

from __future__ import annotations

import random
from array import array
from dataclasses import fields
from typing import Protocol

from inference_serving.instance import Instance
from inference_serving.request import Request
from llmsim_core.errors import InputError
from llmsim_core.plugins import construct, load_class, shown, user_code_failed


class Router(Protocol):
    """Chooses one of `candidates` for `request` at its arrival time.

    A router class is constructed with the run's seed (`cls(seed)`); register a new policy
    with one line in `ROUTERS`, or load one with `--request-routing-policy CUSTOM
    --custom-router pkg.mod:Class` (example: `examples/custom_router.py`).
    """

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


def request_state(request: Request) -> list[object]:
    """Every field of `request` as a value (containers copied), to see whether user code
    changed any of them."""
    return [bytes(value) if isinstance(value, array) else list(value)
            if isinstance(value, list) else value
            for value in map(request.__getattribute__, REQUEST_FIELDS)]


REQUEST_FIELDS = tuple(f.name for f in fields(Request))


def same_value(was: object, now: object) -> bool:
    """True when a field kept its value and its type (an int turned float or numpy is a
    change too); a value whose comparison fails counts as changed."""
    if type(was) is not type(now):
        return False
    try:
        return bool(was == now)
    except BaseException:  # user code's __eq__ or __bool__
        return False


class CheckedRouter:
    """A `CUSTOM` router whose choices are checked: an exception, an answer that is not one
    of the candidates, or a change to the request it routes (any field: the scheduler and the
    outputs rely on them) stops the run with a one-line error naming the class. The router
    gets a copy of the candidate list, so changing that list changes nothing."""

    def __init__(self, inner: Router, where: str) -> None:
        self.inner = inner
        self.where = where

    def route(self, request: Request, candidates: list[Instance]) -> Instance:
        """The user router's choice, checked."""
        cls = type(self.inner)
        before = request_state(request)
        queued = [inst.scheduler.num_requests() for inst in candidates]
        try:
            choice = self.inner.route(request, list(candidates))
        except InputError:
            raise
        except BaseException as exc:  # user code (even sys.exit): one line
            raise user_code_failed(cls, "route", exc, self.where) from None
        after = request_state(request)
        changed = next((change for change in zip(REQUEST_FIELDS, before, after, strict=True)
                        if not same_value(change[1], change[2])), None)
        if changed is not None:
            name, was, now = changed
            values = "" if isinstance(was, bytes | list) or isinstance(now, bytes | list) \
                else f" from {shown(was, 40)} to {shown(now, 40)}"
            raise InputError(f"{cls.__name__}.route changed field '{name}' of request "
                             f"{before[0]}{values}", self.where,
                             "read the request in a router, never change it")
        if [inst.scheduler.num_requests() for inst in candidates] != queued:
            raise InputError(f"{cls.__name__}.route changed what an instance's scheduler holds "
                             f"while routing request {before[0]}", self.where,
                             "only choose the instance: the simulator queues the request")
        if not any(choice is inst for inst in candidates):
            ids = [inst.index for inst in candidates]
            raise InputError(f"{cls.__name__}.route returned {shown(choice, 60)} for request "
                             f"{request.rid}, not one of the candidate instances {ids}",
                             self.where, "return an element of the candidates list")
        return choice


def load_custom_router(spec: str, seed: int) -> Router:
    """Instantiate `pkg.module:Class` (constructor takes the seed) as a checked router."""
    where = f"--custom-router {spec}"
    cls = load_class(spec, "--custom-router", Router)
    return CheckedRouter(construct(cls, where, seed), where)


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
