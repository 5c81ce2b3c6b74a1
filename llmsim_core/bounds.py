"""Physical ranges of user-supplied numbers, each with the reason for its limits.

The limits are generous: they only stop values that make a run meaningless (a memory of zero
bytes) or endless (a link so slow, or a latency so long, that one iteration outlasts any trace).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from llmsim_core.errors import InputError

INT32_MAX = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Bound:
    """An allowed range [low, high] (or (low, high] when `low_open`) and why it is limited."""

    low: float
    high: float
    unit: str
    why: str
    integer: bool = False
    low_open: bool = False

    def describe(self) -> str:
        """The range as text, e.g. `a number in [0.001, 1e+12] GB/s`."""
        kind = "an integer" if self.integer else "a number"
        left = "(" if self.low_open else "["
        unit = f" {self.unit}" if self.unit else ""
        if self.integer:
            return f"{kind} in {left}{int(self.low)}, {int(self.high)}]{unit}"
        return f"{kind} in {left}{self.low:g}, {self.high:g}]{unit}"


# Below 1 MB/s moving one iteration's KV or weights takes simulated hours, so the run never ends;
# above 1e12 GB/s (a zettabyte per second) no link or memory exists.
BANDWIDTH = Bound(1e-3, 1e12, "GB/s", "slower links or memories make every iteration last "
                  "hours and the run never ends")
# Memory tiers are timed at whole GB/s (the fraction is dropped, as the existing simulator's
# memory backend reads `mem-bw`), so a memory below 1 GB/s could only be timed wrongly.
MEMORY_BANDWIDTH = Bound(1, 1e12, "GB/s", "memories are timed at whole GB/s (the fraction is "
                         "dropped); slower ones make every iteration last hours")
# 1e12 ns is 1000 s per access: each iteration would outlast any realistic trace.
LATENCY = Bound(0, 1e12, "ns", "a longer latency makes one access outlast the whole trace")
# An exabyte per device is far beyond any memory; zero bytes holds no weights.
MEM_SIZE = Bound(0, 1e9, "GB", "a device memory must hold something and be physical",
                 low_open=True)
MEM_UTIL = Bound(0, 1, "", "it is the fraction of device memory the KV cache may use",
                 low_open=True)
# 65536 NPUs or nodes is beyond any cluster the network models are built for.
DEVICE_COUNT = Bound(1, 65536, "", "larger clusters are beyond what the network models cover",
                     integer=True)
SCHEDULER_LIMIT = Bound(1, INT32_MAX, "", "scheduler limits are 32-bit integers", integer=True)
OVERHEAD_NS = Bound(0, 1e12, "ns", "a longer fixed overhead makes one iteration outlast the "
                    "whole trace", integer=True)
# 1e15 ns is 11.6 days of simulated time; later arrivals make the clock step through millions
# of idle status windows before the request is served.
ARRIVAL_NS = Bound(0, 1e15, "ns", "later arrivals make the simulated clock step through "
                   "millions of idle status windows")
TOKENS = Bound(1, INT32_MAX, "tokens", "token counts are 32-bit integers", integer=True)
MODEL_DIM = Bound(1, INT32_MAX, "", "no real model has a dimension beyond 32 bits",
                  integer=True)
# Profiled kernel times: a negative time is a broken measurement, 1e12 ns (1000 s per kernel)
# is not a kernel.
PROFILE_NS = Bound(0, 1e12, "ns", "it is one kernel's measured time")
# One operator or iteration timed by user code or an outside binary: beyond 1000 s it outlasts
# any trace, and the clock would step through millions of status windows per iteration.
STEP_NS = Bound(0, 1e12, "ns", "one operator or iteration longer than 1000 s outlasts any trace "
                "and the run crawls through its status windows", integer=True)
# Status windows shorter than 1 ms print a block per simulated millisecond: a one-minute trace
# would print 60 000 of them; longer than 11.6 days prints nothing useful.
LOG_INTERVAL_S = Bound(1e-3, 1e6, "s", "shorter windows print a status block per simulated "
                       "millisecond and the run crawls")
# Wall seconds an outside ASTRA-Sim binary may take per answer: zero allows none, and a binary
# silent for a day hangs rather than computes.
BINARY_TIMEOUT_S = Bound(0, 86400, "s", "a zero limit allows no answer and one beyond a day "
                         "lets a hung binary hold the run", low_open=True)
# A latency objective of zero can never be met; 1e9 ms (11.6 days) already meets every request.
SLO_MS = Bound(0, 1e9, "ms", "a zero objective is never met and a larger one always is",
               low_open=True)
# The status windows up to the last arrival each cost a heap event and a printed block; two
# million of them take minutes of wall time before the last request is even served.
MAX_STATUS_WINDOWS = 2_000_000
# Each block holds a line per instance: past two instances the window budget shrinks so that
# no cluster prints more than two instances' worth (a 16-instance cluster: 250 000 windows).
MAX_INSTANCE_WINDOWS = 4_000_000


def status_window_limit(instances: int) -> int:
    """The most status windows the last arrival may lie into a run of `instances` instances."""
    return min(MAX_STATUS_WINDOWS, MAX_INSTANCE_WINDOWS // max(instances, 1))


def checked(value: Any, bound: Bound, name: str, where: str, fix: str) -> float:
    """`value` as a float if it is a finite JSON number inside `bound`, else an InputError."""
    # An int is checked without float conversion, which overflows beyond 1.8e308.
    ok = not isinstance(value, bool) and isinstance(value, int | float) and \
        (isinstance(value, int) or math.isfinite(value)) and \
        (not bound.integer or value == int(value)) and \
        (value > bound.low if bound.low_open else value >= bound.low) and value <= bound.high
    if not ok:
        raise InputError(f"'{name}' must be {bound.describe()} ({bound.why}), got {value!r}",
                         where, fix)
    return float(value)


def checked_int(value: Any, bound: Bound, name: str, where: str, fix: str) -> int:
    """`value` as an int if it is an integral JSON number inside `bound`, else an InputError."""
    return int(checked(value, bound, name, where, fix))
