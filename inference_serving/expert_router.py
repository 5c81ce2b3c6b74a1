"""MoE expert routing: how many of an iteration's tokens each expert receives (serving.md §7).

Every policy is a pure function of the token count: `RAND` and `FAST` draw from a generator
re-created with the run's seed for every iteration (identical batches route identically), so
the result can be memoized per token count.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from llmsim_core.errors import InputError


def _rr(tokens: int, experts: int, k: int, layers: int, seed: int) -> list[np.ndarray]:
    """Token t goes to experts (t + o) mod E for o < k, the same in every layer."""
    counts = np.zeros(experts, dtype=np.int64)
    for offset in range(k):
        counts += np.bincount((np.arange(tokens) + offset) % experts, minlength=experts)
    return [counts] * layers


def _draw(rng: np.random.Generator, tokens: int, experts: int, k: int) -> np.ndarray:
    picks = rng.random((tokens, experts)).argpartition(k - 1, axis=1)[:, :k]
    return np.bincount(picks.ravel(), minlength=experts)


def _rand(tokens: int, experts: int, k: int, layers: int, seed: int) -> list[np.ndarray]:
    """k distinct random experts per token, drawn again for every layer."""
    rng = np.random.default_rng(seed)
    return [_draw(rng, tokens, experts, k) for _ in range(layers)]


def _fast(tokens: int, experts: int, k: int, layers: int, seed: int) -> list[np.ndarray]:
    """Like RAND, drawn once and reused for every layer."""
    return [_draw(np.random.default_rng(seed), tokens, experts, k)] * layers


EXPERT_ROUTERS: dict[str, Callable[[int, int, int, int, int], list[np.ndarray]]] = {
    "RR": _rr, "RAND": _rand, "FAST": _fast}


def expert_router(name: str) -> Callable[[int, int, int, int, int], list[np.ndarray]]:
    """The policy registered under `name`: (tokens, experts, k, layers, seed) → counts/layer."""
    policy = EXPERT_ROUTERS.get(name)
    if policy is None:
        raise InputError(f"unknown expert routing policy '{name}'", "--expert-routing-policy",
                         f"use one of {', '.join(EXPERT_ROUTERS)}")
    return policy
