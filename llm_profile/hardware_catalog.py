"""Accelerator specifications (`llm_profile/hardware/*.json`), each number with its source."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from llmsim_core.errors import InputError
from llmsim_core.strict_json import load_file

CATALOGUE_DIR = Path(__file__).resolve().parent / "hardware"
_DTYPES_BY_BITS = {32: ("fp32",), 16: ("fp16", "bf16"), 8: ("fp8",), 4: ("fp4",)}
_NUMBERS = ("mem_capacity_gb", "mem_bw_gbps", "interconnect_gbps", "tdp_w", "idle_w")


@dataclass(frozen=True, slots=True)
class HardwareSpec:
    """Peak compute per dtype (TFLOP/s, dense), memory, interconnect and power of one device."""

    name: str
    vendor: str
    peak_tflops: dict[str, float]
    mem_capacity_gb: float
    mem_bw_gbps: float
    interconnect_gbps: float
    tdp_w: float
    idle_w: float
    sources: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    efficiency: dict[str, float] = field(default_factory=dict)
    notes: str = ""

    def peak_flops_per_ns(self, bits: int) -> float:
        """Dense peak FLOP per ns for `bits`-bit floats (32, 16, 8, 4)."""
        # A device without tensor cores for 8/4-bit floats (Ampere, TPU v6e) runs such weights
        # through weight-only kernels that dequantise to 16 bits, so the 16-bit rate applies;
        # int8 TOPS are a different (integer W8A8) path and are not used for it.
        for width in (bits, 16):
            for dtype in _DTYPES_BY_BITS.get(width, ()):
                if dtype in self.peak_tflops:
                    return self.peak_tflops[dtype] * 1e3
        raise InputError(f"no peak FLOP/s for {bits}-bit floats", f"hardware {self.name}",
                         "add fp16/bf16 (and fp32) to peak_tflops in its catalogue file")

    @property
    def mem_bytes_per_ns(self) -> float:
        """Memory bandwidth in bytes/ns (decimal GB/s)."""
        return self.mem_bw_gbps


def _load(path: Path) -> HardwareSpec:
    raw = load_file(path, "fix the catalogue file")
    try:
        numbers = {key: float(raw[key]) for key in _NUMBERS}
        peaks = {dtype: float(value) for dtype, value in raw["peak_tflops"].items()}
        spec = HardwareSpec(
            name=str(raw["name"]), vendor=str(raw["vendor"]), peak_tflops=peaks,
            sources=tuple(raw["sources"]), aliases=tuple(raw.get("aliases", ())),
            efficiency={k: float(v) for k, v in raw.get("efficiency", {}).items()},
            notes=str(raw.get("notes", "")), **numbers)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"bad or missing entry ({exc})", str(path),
                         "give name, vendor, peak_tflops, sources and the numeric keys "
                         f"{', '.join(_NUMBERS)}") from None
    positive = (*numbers.values(), *peaks.values(), *spec.efficiency.values())
    if not all(0 < v < math.inf for v in positive) or not peaks or not spec.sources:
        raise InputError("numbers must be positive and finite and sources non-empty", str(path),
                         "fix the catalogue file")
    return spec


@lru_cache(maxsize=1)
def _catalogue() -> dict[str, HardwareSpec]:
    specs = {}
    for path in sorted(CATALOGUE_DIR.glob("*.json")):
        spec = _load(path)
        for key in (spec.name, *spec.aliases):
            specs[key.lower()] = spec
    return specs


def known_hardware() -> list[str]:
    """Catalogue names (without aliases), sorted."""
    return sorted({spec.name for spec in _catalogue().values()})


def is_known(name: str) -> bool:
    """True when `name` is a catalogue name or alias (case-insensitive)."""
    return name.lower() in _catalogue()


def load_hardware(name: str) -> HardwareSpec:
    """Look a device up by name or alias, case-insensitively."""
    spec = _catalogue().get(name.lower())
    if spec is None:
        raise InputError(f"unknown hardware '{name}'", f"not in {CATALOGUE_DIR}",
                         f"use one of {', '.join(known_hardware())} or add a catalogue file")
    return spec
