"""MoE expert routing: how many of an iteration's tokens each expert receives (serving.md §7).

An expert router is a class constructed without arguments whose `route(tokens, experts, k,
layers, seed)` returns, for each of the `layers` MoE layers, an array of `experts` token counts
(each token goes to k distinct experts, so a layer's counts sum to tokens · k). The plan
builder memoizes the answer per token count, so `route` must be a pure function of its
arguments: `RAND` and `FAST` draw from a generator re-created with the run's seed for every
call (identical batches route identically). A new policy is one class and one line in
`EXPERT_ROUTERS`; `--expert-routing-policy CUSTOM --custom-expert-router pkg.mod:Class` loads
one from outside (example: `examples/custom_expert_router.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from llmsim_core.errors import InputError
from llmsim_core.plugins import construct, load_class, user_code_failed

CountsFn = Callable[[int, int, int, int, int], list[np.ndarray]]


class ExpertRouter(Protocol):
    """Splits an iteration's tokens over the experts of every MoE layer."""

    def route(self, tokens: int, experts: int, k: int, layers: int,
              seed: int) -> Sequence[np.ndarray]:
        """Per layer, the number of tokens each expert receives."""
        ...


class RoundRobinExperts:
    """Token t goes to experts (t + o) mod E for o < k, the same in every layer."""

    def route(self, tokens: int, experts: int, k: int, layers: int,
              seed: int) -> list[np.ndarray]:
        """Round-robin counts, identical in every layer."""
        counts = np.zeros(experts, dtype=np.int64)
        for offset in range(k):
            counts += np.bincount((np.arange(tokens) + offset) % experts, minlength=experts)
        return [counts] * layers


def _draw(rng: np.random.Generator, tokens: int, experts: int, k: int) -> np.ndarray:
    picks = rng.random((tokens, experts)).argpartition(k - 1, axis=1)[:, :k]
    return np.bincount(picks.ravel(), minlength=experts)


class RandomExperts:
    """k distinct random experts per token, drawn again for every layer."""

    def route(self, tokens: int, experts: int, k: int, layers: int,
              seed: int) -> list[np.ndarray]:
        """One seeded draw per layer."""
        rng = np.random.default_rng(seed)
        return [_draw(rng, tokens, experts, k) for _ in range(layers)]


class FastExperts:
    """Like RAND, drawn once and reused for every layer."""

    def route(self, tokens: int, experts: int, k: int, layers: int,
              seed: int) -> list[np.ndarray]:
        """One seeded draw shared by every layer."""
        return [_draw(np.random.default_rng(seed), tokens, experts, k)] * layers


EXPERT_ROUTERS: dict[str, type] = {"RR": RoundRobinExperts, "RAND": RandomExperts,
                                   "FAST": FastExperts}


class CheckedExpertRouter:
    """A `CUSTOM` expert router whose answers are checked: `layers` arrays of `experts`
    integer counts in 0..tokens summing to tokens · k (k distinct experts per token)."""

    def __init__(self, inner: ExpertRouter, where: str) -> None:
        self.inner = inner
        self.where = where

    def _bad(self, what: str) -> InputError:
        return InputError(f"{type(self.inner).__name__}.route {what}", self.where,
                          "return one array of per-expert token counts per layer")

    def route(self, tokens: int, experts: int, k: int, layers: int,
              seed: int) -> list[np.ndarray]:
        """The user router's counts, checked and as int64 arrays."""
        try:
            routed = list(self.inner.route(tokens, experts, k, layers, seed))
        except InputError:
            raise
        except BaseException as exc:  # user code (even sys.exit): one line
            raise user_code_failed(type(self.inner), "route", exc, self.where) from None
        if len(routed) != layers:
            raise self._bad(f"returned {len(routed)} layers for {layers}")
        checked = []
        for layer, counts in enumerate(routed):
            try:
                array = np.asarray(counts)
            except BaseException:  # ragged lists, or user objects whose conversion fails
                raise self._bad(f"gave layer {layer} counts that are not an array of "
                                f"{experts} integers") from None
            if array.shape != (experts,) or array.dtype.kind not in "iu":
                raise self._bad(f"gave layer {layer} counts of shape {array.shape} and dtype "
                                f"{array.dtype}, expected {experts} integers")
            if (array < 0).any() or (array > tokens).any() or int(array.sum()) != tokens * k:
                raise self._bad(f"gave layer {layer} counts {array.tolist()} for {tokens} "
                                f"tokens and k={k}: each must lie in 0..{tokens} and they must "
                                f"sum to {tokens * k}")
            checked.append(array.astype(np.int64))
        return checked


def expert_router(name: str, custom: str | None = None) -> CountsFn:
    """The `route` of the policy registered under `name` (`CUSTOM` loads `custom`)."""
    if name == "CUSTOM":
        if not custom:
            raise InputError("CUSTOM expert routing needs a class", "--expert-routing-policy",
                             "pass --custom-expert-router package.module:Class")
        where = f"--custom-expert-router {custom}"
        cls = load_class(custom, "--custom-expert-router", ExpertRouter)
        return CheckedExpertRouter(construct(cls, where), where).route
    policy = EXPERT_ROUTERS.get(name)
    if policy is None:
        raise InputError(f"unknown expert routing policy '{name}'", "--expert-routing-policy",
                         f"use one of {', '.join([*EXPERT_ROUTERS, 'CUSTOM'])}")
    return policy().route
