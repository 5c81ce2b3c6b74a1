"""System-layer settings (`system.json`, engine.md §4.6) that shape collective timing."""

from __future__ import annotations

from dataclasses import dataclass

ALGORITHMS = ("ring", "direct", "halvingDoubling", "doubleBinaryTree")
POLICIES = ("LIFO", "FIFO", "EXPLICIT")
OPTIMIZATIONS = ("localBWAware", "baseline")


def _algorithm(name: str) -> str:
    """Canonical algorithm name; `directN` is Direct with a concurrency window."""
    if name.startswith("direct"):
        return "direct"
    if name not in ALGORITHMS:
        raise ValueError(f"unknown collective implementation {name!r}; use one of "
                         f"{', '.join(ALGORITHMS)}")
    return name


@dataclass(frozen=True, slots=True)
class SystemConfig:
    """Collective algorithms per dimension, chunking and per-step costs."""

    scheduling_policy: str = "LIFO"
    collective_optimization: str = "localBWAware"
    endpoint_delay: int = 10
    active_chunks_per_dimension: int = 1
    preferred_dataset_splits: int = 1
    local_mem_bw: float = 1600.0
    all_reduce: tuple[str, ...] = ("ring",)
    all_gather: tuple[str, ...] = ("ring",)
    reduce_scatter: tuple[str, ...] = ("ring",)
    all_to_all: tuple[str, ...] = ("ring",)

    def __post_init__(self) -> None:
        if self.scheduling_policy not in POLICIES:
            raise ValueError(f"scheduling-policy must be one of {', '.join(POLICIES)}")
        if self.collective_optimization not in OPTIMIZATIONS:
            raise ValueError(f"collective-optimization must be one of {', '.join(OPTIMIZATIONS)}")
        if self.endpoint_delay < 0:
            raise ValueError("endpoint-delay must be >= 0")
        if self.active_chunks_per_dimension < 1 or self.preferred_dataset_splits < 1:
            raise ValueError("active-chunks-per-dimension and preferred-dataset-splits must "
                             "be >= 1")
        if self.local_mem_bw <= 0:
            raise ValueError("local-mem-bw must be > 0")
        for kind in ("all_reduce", "all_gather", "reduce_scatter", "all_to_all"):
            names = getattr(self, kind)
            if not names:
                raise ValueError(f"{kind.replace('_', '-')}-implementation must not be empty")
            for name in names:
                _algorithm(name)

    def algorithms(self, kind: str) -> tuple[str, ...]:
        """Canonical algorithm per dimension for a collective kind."""
        return tuple(_algorithm(n) for n in getattr(self, kind))

    @classmethod
    def from_json_dict(cls, raw: dict) -> SystemConfig:
        """Build from the hyphenated keys of a system.json object."""
        if not isinstance(raw, dict):
            raise ValueError("system configuration must be a JSON object")

        def impl(key: str) -> tuple[str, ...]:
            value = raw.get(f"{key}-implementation", ["ring"])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{key}-implementation must be a list of strings")
            return tuple(value)

        def number(key: str, default: float) -> float:
            value = raw.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{key} must be a number, got {value!r}")
            return value

        return cls(
            scheduling_policy=str(raw.get("scheduling-policy", "LIFO")),
            collective_optimization=str(raw.get("collective-optimization", "localBWAware")),
            endpoint_delay=int(number("endpoint-delay", 10)),
            active_chunks_per_dimension=int(number("active-chunks-per-dimension", 1)),
            preferred_dataset_splits=int(number("preferred-dataset-splits", 1)),
            local_mem_bw=float(number("local-mem-bw", 1600)),
            all_reduce=impl("all-reduce"),
            all_gather=impl("all-gather"),
            reduce_scatter=impl("reduce-scatter"),
            all_to_all=impl("all-to-all"),
        )
