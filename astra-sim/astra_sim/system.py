"""System-layer settings (`system.json`, engine.md §4.6) that shape collective timing."""

from __future__ import annotations

import re
from dataclasses import dataclass

ALGORITHMS = ("ring", "direct", "halvingDoubling", "doubleBinaryTree")
POLICIES = ("LIFO", "FIFO", "EXPLICIT")
OPTIMIZATIONS = ("localBWAware", "baseline")
# `directN` (a concurrency window of N) has the same lockstep timing as plain `direct`.
_DIRECT = re.compile(r"direct\d*")
# Every key of a system.json (engine.md §4.6): those above shape the timing, the rest are read
# by the binaries only (debug, LogGP bus, custom collectives) or by none (`boost-mode`).
_COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all")
KNOWN_KEYS = frozenset((
    "scheduling-policy", "collective-optimization", "endpoint-delay", "local-reduction-delay",
    "active-chunks-per-dimension", "preferred-dataset-splits", "model-shared-bus", "L", "o", "g",
    "G", "peak-perf", "local-mem-bw", "roofline-enabled", "trace-enabled", "replay-only",
    "track-local-mem", "local-mem-trace-filename", "per-node-custom-implementation",
    "boost-mode", *(f"{c}-implementation" for c in _COLLECTIVES),
    *(f"{c}-implementation-custom" for c in _COLLECTIVES),
    *(f"{c}-implementation-chakra" for c in _COLLECTIVES)))


def canonical_algorithm(name: str) -> str:
    """Canonical algorithm name of one `*-implementation` entry (`direct8` → `direct`)."""
    if _DIRECT.fullmatch(name):
        return "direct"
    if name not in ALGORITHMS:
        raise ValueError(f"unknown collective implementation {name!r}; use one of "
                         f"{', '.join(ALGORITHMS)} or directN")
    return name


@dataclass(frozen=True, slots=True)
class SystemConfig:
    """Collective algorithms per dimension, chunking and per-step costs."""

    scheduling_policy: str = "LIFO"
    collective_optimization: str = "localBWAware"
    endpoint_delay: int = 10
    active_chunks_per_dimension: int = 1
    preferred_dataset_splits: int = 1
    local_mem_bw: float = 1600.0  # decimal GB/s = bytes/ns
    all_reduce: tuple[str, ...] = ("ring",)
    all_gather: tuple[str, ...] = ("ring",)
    reduce_scatter: tuple[str, ...] = ("ring",)
    all_to_all: tuple[str, ...] = ("ring",)

    def __post_init__(self) -> None:
        if self.scheduling_policy not in POLICIES:
            raise ValueError(f"scheduling-policy must be one of {', '.join(POLICIES)}, got "
                             f"{self.scheduling_policy!r}")
        if self.collective_optimization not in OPTIMIZATIONS:
            raise ValueError(f"collective-optimization must be one of "
                             f"{', '.join(OPTIMIZATIONS)}, got {self.collective_optimization!r}")
        # 0 crashes upstream but the casys fork accepts it.
        if self.endpoint_delay < 0:
            raise ValueError(f"endpoint-delay must be >= 0, got {self.endpoint_delay}")
        if self.active_chunks_per_dimension < 1:
            raise ValueError(f"active-chunks-per-dimension must be >= 1, got "
                             f"{self.active_chunks_per_dimension}")
        if self.preferred_dataset_splits < 1:
            raise ValueError(f"preferred-dataset-splits must be >= 1, got "
                             f"{self.preferred_dataset_splits}")
        if not self.local_mem_bw > 0:
            raise ValueError(f"local-mem-bw must be > 0 (it divides the reduction cost), got "
                             f"{self.local_mem_bw}")
        for kind in ("all_reduce", "all_gather", "reduce_scatter", "all_to_all"):
            names = getattr(self, kind)
            if not isinstance(names, tuple) or not names:
                raise ValueError(f"{kind.replace('_', '-')}-implementation must be a non-empty "
                                 "tuple of algorithm names")
            for name in names:
                canonical_algorithm(name)

    def algorithms(self, kind: str) -> tuple[str, ...]:
        """Canonical algorithm per dimension for a collective kind ("all_reduce", …)."""
        return tuple(canonical_algorithm(n) for n in getattr(self, kind))

    @classmethod
    def from_json_dict(cls, raw: dict) -> SystemConfig:
        """Build from the hyphenated keys of a system.json object; other keys are ignored."""
        if not isinstance(raw, dict):
            raise ValueError("system configuration must be a JSON object")

        def text(key: str, default: str) -> str:
            value = raw.get(key, default)
            if not isinstance(value, str):
                raise ValueError(f"{key} must be a string, got {value!r}")
            return value

        def integer(key: str, default: int) -> int:
            value = raw.get(key, default)
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{key} must be an integer, got {value!r}")
            return value

        def number(key: str, default: float) -> float:
            value = raw.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{key} must be a number, got {value!r}")
            return float(value)

        def implementation(key: str) -> tuple[str, ...]:
            value = raw.get(f"{key}-implementation", ["ring"])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{key}-implementation must be a list of strings, got {value!r}")
            return tuple(value)

        return cls(
            scheduling_policy=text("scheduling-policy", "LIFO"),
            collective_optimization=text("collective-optimization", "localBWAware"),
            endpoint_delay=integer("endpoint-delay", 10),
            active_chunks_per_dimension=integer("active-chunks-per-dimension", 1),
            preferred_dataset_splits=integer("preferred-dataset-splits", 1),
            local_mem_bw=number("local-mem-bw", 1600.0),
            all_reduce=implementation("all-reduce"),
            all_gather=implementation("all-gather"),
            reduce_scatter=implementation("reduce-scatter"),
            all_to_all=implementation("all-to-all"),
        )
