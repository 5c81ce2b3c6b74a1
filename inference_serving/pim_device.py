"""PIM device files (`pim_config/<name>.ini`, formats.md §5) and what a node derives from them.

A DRAMSim3-style INI: section headers, blank lines and `;` lines are skipped, anything after
`#` is a comment; every other line is `key = value` in one flat map. The keys below give the
channel geometry, bandwidth, read latency and power; the attention fit (ns per context token
and a fixed part) comes from the INI's extension keys or, for the four published devices, from
the table of formats.md §5 (valid for 32 query heads, 8 KV heads, head dim 128 only).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from llmsim_core.bounds import BANDWIDTH, INT32_MAX, LATENCY, Bound, checked
from llmsim_core.errors import InputError

GIB = 1 << 30
_WIDTH = Bound(1, 65536, "bits", "no DRAM device or bus is wider", integer=True)
# Physical ranges of the keys read (formats.md §5): values outside make the derived channel
# meaningless (zero banks) or the run endless (a read latency of centuries).
KEY_BOUNDS = {
    "bankgroups": Bound(1, 1024, "", "it counts bank groups", integer=True),
    "banks_per_group": Bound(1, 1024, "", "it counts banks", integer=True),
    "rows": Bound(1, INT32_MAX, "", "it counts rows of a bank", integer=True),
    "columns": Bound(1, INT32_MAX, "", "it counts columns of a row", integer=True),
    "device_width": _WIDTH,
    "bus_width": _WIDTH,
    "channel_size": Bound(0, 1e9, "MB", "a channel holds something", low_open=True),
    "data_rate": Bound(0, 1e7, "MT/s", "it is a transfer rate", low_open=True),
    "CL": Bound(1, 1e6, "cycles", "it is the read latency in whole clock cycles", integer=True),
    "tCK": Bound(0, 1e3, "ns", "it is one clock period", low_open=True),
    "idle_power": Bound(0, 1e9, "mW", "no DIMM draws more than a megawatt"),
    "peak_power": Bound(0, 1e9, "mW", "no DIMM draws more than a megawatt"),
}
REQUIRED = tuple(KEY_BOUNDS)
SLOPE_KEY, INTERCEPT_KEY = "pim_attn_slope_ns_per_token", "pim_attn_intercept_ns"
# The published fits are ~300 ns per token and ~30 µs; a millisecond per token or a second
# per decode makes every iteration last hours of simulated time.
FIT_BOUNDS = {SLOPE_KEY: Bound(0, 1e6, "ns/token", "it is one context token's attention time"),
              INTERCEPT_KEY: Bound(0, 1e9, "ns", "it is one decode's fixed attention time")}
_EXTENSION_PREFIX = "pim_attn"
# Published attention fits per device file (formats.md §5): (ns per token, ns).
ATTENTION_FITS = {
    "DDR4_8GB_3200_pim": (333.2538, 30675.2739),
    "HBM2_1GB_2000_pim": (242.0548, 14513.5015),
    "LPDDR4X_2GB_4266_pim": (432.4458, 33918.1734),
    "LPDDR5_2GB_6400_pim": (282.4338, 15996.7018),
}
FIT_SHAPE = (32, 8, 128)  # query heads, KV heads, head dim the published fits hold for


@dataclass(frozen=True, slots=True)
class PimDevice:
    """One PIM channel (DIMM) type: capacity, bandwidth, read latency, power, attention fit.

    `fit_is_published` is True when the fit comes from the built-in table (then only the
    `FIT_SHAPE` head shape is supported).
    """

    name: str
    channel_bytes: int
    channel_bw_gbps: float
    latency_ns: float
    idle_power_w: float
    peak_power_w: float
    slope_ns_per_token: float
    intercept_ns: float
    fit_is_published: bool = True

    def channels(self, mem_bytes: int) -> int:
        """Channels of a node whose host memory holds `mem_bytes`."""
        return mem_bytes // self.channel_bytes


_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")  # ASCII digits only


def _value(text: str) -> float | int | str:
    """A value as the INI reader types it: a plain ASCII number with `.` is a float, without
    one an int; anything else (`32_768`, non-ASCII digits) stays a string, which the key's
    check then refuses."""
    if not _NUMBER.fullmatch(text):
        return text
    return float(text) if "." in text or "e" in text.lower() else int(text)


_KNOWN_BY_CASE = {key.lower(): key for key in (*KEY_BOUNDS, *FIT_BOUNDS)}


def parse_ini(text: str, where: str) -> dict[str, float | int | str]:
    """The flat key map of a DRAMSim3-style INI; a key this version reads may appear once, and
    an extension key (`pim_attn…`) must be one it knows."""
    values: dict[str, float | int | str] = {}
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith((";", "[")):
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise InputError(f"line {number} is not 'key = value'", where,
                             "fix the PIM device file (formats.md §5)")
        if key.startswith(_EXTENSION_PREFIX) and key not in FIT_BOUNDS:
            raise InputError(f"unknown extension key '{key}' on line {number}", where,
                             f"use {SLOPE_KEY} and {INTERCEPT_KEY}")
        known = _KNOWN_BY_CASE.get(key.lower())
        if known is not None and known != key:
            # Other keys of a DRAMSim3 file are ignored; one that differs from a key this
            # version reads only in case is a typo that would silently keep the default.
            raise InputError(f"key '{key}' on line {number} differs from '{known}' only in case",
                             where, f"write it as '{known}'")
        if key in seen and (key in KEY_BOUNDS or key in FIT_BOUNDS):
            raise InputError(f"key '{key}' is set twice (lines {seen[key]} and {number})", where,
                             "keep one of them")
        seen[key] = number
        values[key] = _value(value)
    return values


def _number(values: dict, key: str, where: str, bound: Bound) -> float:
    value = values.get(key)
    if value is None:
        raise InputError(f"missing key '{key}'", where, "add it (formats.md §5)")
    return checked(value, bound, key, where, "fix the PIM device file")


def device_from_values(name: str, values: dict, where: str) -> PimDevice:
    """Validate the keys of formats.md §5 and derive one channel's parameters."""
    v = {key: _number(values, key, where, bound) for key, bound in KEY_BOUNDS.items()}
    if v["bus_width"] % v["device_width"]:
        raise InputError(f"bus_width {v['bus_width']:g} is not a multiple of device_width "
                         f"{v['device_width']:g}", where, "fix the PIM device file (a rank is "
                         "bus_width / device_width devices)")
    if v["peak_power"] < v["idle_power"]:
        raise InputError(f"peak_power {v['peak_power']:g} mW is below idle_power "
                         f"{v['idle_power']:g} mW", where, "a busier state cannot draw less")
    checked(v["bus_width"] / 8 * v["data_rate"] / 1000, BANDWIDTH,
            "channel bandwidth (bus_width / 8 × data_rate / 1000)", where,
            "fix bus_width or data_rate")
    checked(v["CL"] * v["tCK"], LATENCY, "read latency (CL × tCK)", where, "fix CL or tCK")
    devices_per_rank = v["bus_width"] / v["device_width"]
    page_bytes = v["columns"] * v["device_width"] / 8
    mb_per_rank = page_bytes * v["rows"] / 1024 / 1024 * v["bankgroups"] * \
        v["banks_per_group"] * devices_per_rank
    ranks = max(1, math.ceil(v["channel_size"] / mb_per_rank))
    channel_mb = ranks * mb_per_rank
    fitted = SLOPE_KEY in values or INTERCEPT_KEY in values
    if fitted:
        slope = _number(values, SLOPE_KEY, where, FIT_BOUNDS[SLOPE_KEY])
        intercept = _number(values, INTERCEPT_KEY, where, FIT_BOUNDS[INTERCEPT_KEY])
    elif name in ATTENTION_FITS:
        slope, intercept = ATTENTION_FITS[name]
    else:
        raise InputError(f"no attention fit for PIM device '{name}'", where,
                         f"add '{SLOPE_KEY}' and '{INTERCEPT_KEY}' to the file")
    return PimDevice(
        name=name, channel_bytes=int(channel_mb * (1 << 20)),
        channel_bw_gbps=v["bus_width"] / 8 * v["data_rate"] / 1000,
        latency_ns=v["CL"] * v["tCK"],
        idle_power_w=v["idle_power"] / 1000, peak_power_w=v["peak_power"] / 1000,
        slope_ns_per_token=slope, intercept_ns=intercept, fit_is_published=not fitted)


def load_pim_device(name: str, root: Path, where: str) -> PimDevice:
    """Read `<root>/<name>.ini`; `where` names the cluster-config key that asked for it."""
    if not name or "/" in name or "\\" in name or name.endswith(".ini"):
        raise InputError(f"PIM device name {name!r} is not a file base name", where,
                         "name a file of --pim-configs without folder or extension")
    path = root / f"{name}.ini"
    if not path.is_file():
        raise InputError(f"PIM device file {path} not found", where,
                         "fix cpu_mem.pim_config or pass --pim-configs DIR")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError("PIM device file is not UTF-8 text", str(path),
                         "save it as UTF-8") from None
    return device_from_values(name, parse_ini(text, str(path)), str(path))
