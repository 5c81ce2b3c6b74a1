"""The per-node `power` block of a cluster config (formats.md §1.7), validated strictly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmsim_core.bounds import Bound, checked, checked_int
from llmsim_core.errors import InputError
from llmsim_core.strict_json import check_keys

# A megawatt per component is beyond any server part; a larger value is a unit mistake (mW).
POWER_W = Bound(0, 1e6, "W", "no server component draws more than a megawatt")
# 1e6 pJ/bit is a microjoule per bit, far above any memory or link.
ENERGY_PER_BIT = Bound(0, 1e6, "pJ/bit", "no memory or link spends a microjoule per bit")
STANDBY_S = Bound(0, 1e9, "s", "it is a duration in seconds")
UTIL = Bound(0, 1, "", "it is a utilisation fraction")
PART_COUNT = Bound(0, 65536, "", "it counts devices of one node", integer=True)
DIMM_GB = Bound(0.001, 1e6, "GB", "a DIMM holds between a megabyte and a petabyte")

NPU_KEYS = ("idle_power", "standby_power", "active_power", "standby_duration")
SECTIONS: dict[str, tuple[str, ...]] = {
    "cpu": ("idle_power", "active_power", "util"),
    "dram": ("dimm_size", "idle_power", "energy_per_bit"),
    "link": ("num_links", "idle_power", "energy_per_bit"),
    "nic": ("num_nics", "idle_power"),
    "storage": ("num_devices", "idle_power"),
}
TOP_KEYS = ("base_node_power", "npu", *SECTIONS)
_BOUNDS = {"idle_power": POWER_W, "standby_power": POWER_W, "active_power": POWER_W,
           "standby_duration": STANDBY_S, "util": UTIL, "energy_per_bit": ENERGY_PER_BIT,
           "dimm_size": DIMM_GB, "num_links": PART_COUNT, "num_nics": PART_COUNT,
           "num_devices": PART_COUNT, "base_node_power": POWER_W}
# With PIM the DIMM geometry and idle power come from the PIM device file (serving.md §11).
PIM_REPLACED = frozenset({"dimm_size", "idle_power"})


@dataclass(frozen=True, slots=True)
class NpuPower:
    """Power states of one NPU model (W) and how long standby lasts after a batch (s)."""

    idle_w: float
    standby_w: float
    active_w: float
    standby_s: float


@dataclass(frozen=True, slots=True)
class PowerSpec:
    """One node's power block. `dram_dimm_gb`/`dram_idle_w` are None when omitted (allowed only
    with PIM attention offloading, whose device file supplies them)."""

    base_w: float
    npu: dict[str, NpuPower]
    cpu_idle_w: float
    cpu_active_w: float
    cpu_util: float
    dram_dimm_gb: float | None
    dram_idle_w: float | None
    dram_pj_per_bit: float
    num_links: int
    link_idle_w: float
    link_pj_per_bit: float
    num_nics: int
    nic_idle_w: float
    num_storage: int
    storage_idle_w: float


class _PowerReader:
    """Typed access to the power block with errors naming the key path and the file."""

    def __init__(self, path: str, where: str) -> None:
        self.path = path
        self.where = where

    def fail(self, what: str, key: str, fix: str) -> InputError:
        return InputError(what, f"key '{self.where}{key}' in {self.path}", fix)

    def section(self, raw: dict, key: str, keys: tuple[str, ...],
                optional: frozenset[str] = frozenset()) -> dict[str, float | None]:
        value = raw.get(key)
        if not isinstance(value, dict):
            raise self.fail("expected a JSON object", key, "see spec/formats.md §1.7")
        check_keys(value, keys, f"{self.where}{key}.", self.path)
        out: dict[str, float | None] = {}
        for sub in keys:
            if sub not in value:
                if sub in optional:
                    out[sub] = None
                    continue
                raise self.fail("missing required key", f"{key}.{sub}",
                                "add it (every power sub-key is required, spec/formats.md §1.7)")
            out[sub] = self.number(value[sub], sub, f"{key}.{sub}")
        return out

    def number(self, value: Any, name: str, key: str) -> float:
        bound = _BOUNDS[name]
        where = f"key '{self.where}{key}' in {self.path}"
        if bound.integer:
            return checked_int(value, bound, name, where, "fix the power block")
        return checked(value, bound, name, where, "fix the power block")


def parse_power(raw: Any, where: str, path: str, hardware_used: list[str]) -> PowerSpec:
    """Validate one node's `power` object; `hardware_used` are the node's instances' hardware
    names, each of which needs an `npu` entry."""
    rd = _PowerReader(path, where)
    if not isinstance(raw, dict):
        raise rd.fail("expected a JSON object", "", "see spec/formats.md §1.7")
    check_keys(raw, TOP_KEYS, where, path)
    for key in TOP_KEYS:
        if key not in raw:
            raise rd.fail("missing required key", key,
                          "add it (every power sub-key is required, spec/formats.md §1.7)")
    base = rd.number(raw["base_node_power"], "base_node_power", "base_node_power")
    npu_raw = raw["npu"]
    if not isinstance(npu_raw, dict):
        raise rd.fail("expected a JSON object", "npu", "map each hardware name to its powers")
    for hardware in hardware_used:
        if hardware not in npu_raw:
            raise rd.fail(f"no entry for hardware '{hardware}' used on this node", "npu",
                          f"add \"npu\": {{\"{hardware}\": {{...}}}} with {', '.join(NPU_KEYS)}")
    for hardware in npu_raw:
        if hardware not in hardware_used:
            raise rd.fail(f"entry for hardware '{hardware}', which no instance of this node uses",
                          f"npu.{hardware}", "drop it or fix the instance's hardware name")
    npu = {}
    for hardware in npu_raw:
        v = rd.section(npu_raw, hardware, NPU_KEYS)
        npu[hardware] = NpuPower(v["idle_power"], v["standby_power"], v["active_power"],
                                 v["standby_duration"])
        for key, value in (("standby_power", v["standby_power"]),
                           ("active_power", v["active_power"])):
            if value < v["idle_power"]:
                raise rd.fail(f"{key} {value:g} W is below idle_power {v['idle_power']:g} W",
                              f"npu.{hardware}.{key}", "a busier state cannot draw less")
        if v["standby_power"] > v["active_power"]:
            raise rd.fail(f"standby_power {v['standby_power']:g} W is above active_power "
                          f"{v['active_power']:g} W", f"npu.{hardware}.standby_power",
                          "a device winding down cannot draw more than a busy one")
    s = {key: rd.section(raw, key, keys, PIM_REPLACED if key == "dram" else frozenset())
         for key, keys in SECTIONS.items()}
    if s["cpu"]["active_power"] < s["cpu"]["idle_power"]:
        raise rd.fail("active_power is below idle_power", "cpu.active_power",
                      "a busier state cannot draw less")
    return PowerSpec(
        base_w=base, npu=npu, cpu_idle_w=s["cpu"]["idle_power"],
        cpu_active_w=s["cpu"]["active_power"], cpu_util=s["cpu"]["util"],
        dram_dimm_gb=s["dram"]["dimm_size"], dram_idle_w=s["dram"]["idle_power"],
        dram_pj_per_bit=s["dram"]["energy_per_bit"], num_links=int(s["link"]["num_links"]),
        link_idle_w=s["link"]["idle_power"], link_pj_per_bit=s["link"]["energy_per_bit"],
        num_nics=int(s["nic"]["num_nics"]), nic_idle_w=s["nic"]["idle_power"],
        num_storage=int(s["storage"]["num_devices"]), storage_idle_w=s["storage"]["idle_power"])
