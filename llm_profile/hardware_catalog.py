"""Accelerator specifications (`llm_profile/hardware/*.json`), each number with its source."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from inference_serving.errors import InputError

CATALOGUE_DIR = Path(__file__).resolve().parent / "hardware"
_DTYPE_BY_BITS = {32: ("fp32",), 16: ("fp16", "bf16"), 8: ("fp8", "int8"), 4: ("fp4", "fp8")}


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
        """Dense peak FLOP per ns for elements of `bits` bits (falls back to the next wider)."""
        for width in (bits, 16, 32):
            for dtype in _DTYPE_BY_BITS.get(width, ()):
                if dtype in self.peak_tflops:
                    return self.peak_tflops[dtype] * 1e3
        raise InputError(f"no peak FLOP/s for {bits}-bit elements", f"hardware {self.name}",
                         "add it to the catalogue file")

    @property
    def mem_bytes_per_ns(self) -> float:
        """Memory bandwidth in bytes/ns (decimal GB/s)."""
        return self.mem_bw_gbps


def _load(path: Path) -> HardwareSpec:
    raw = json.loads(path.read_text())
    return HardwareSpec(
        name=raw["name"], vendor=raw["vendor"], peak_tflops=dict(raw["peak_tflops"]),
        mem_capacity_gb=float(raw["mem_capacity_gb"]), mem_bw_gbps=float(raw["mem_bw_gbps"]),
        interconnect_gbps=float(raw["interconnect_gbps"]), tdp_w=float(raw["tdp_w"]),
        idle_w=float(raw["idle_w"]), sources=tuple(raw["sources"]),
        aliases=tuple(raw.get("aliases", ())), efficiency=dict(raw.get("efficiency", {})),
        notes=raw.get("notes", ""))


@lru_cache(maxsize=1)
def _catalogue() -> dict[str, HardwareSpec]:
    specs = {}
    for path in sorted(CATALOGUE_DIR.glob("*.json")):
        spec = _load(path)
        for key in (spec.name, *spec.aliases):
            specs[key.lower()] = spec
    return specs


def known_hardware() -> list[str]:
    """Catalogue names (without aliases)."""
    return sorted({spec.name for spec in _catalogue().values()})


def load_hardware(name: str) -> HardwareSpec:
    """Look a device up by name or alias, case-insensitively."""
    spec = _catalogue().get(name.lower())
    if spec is None:
        raise InputError(f"unknown hardware '{name}'", f"not in {CATALOGUE_DIR}",
                         f"use one of {', '.join(known_hardware())} or add a catalogue file")
    return spec
