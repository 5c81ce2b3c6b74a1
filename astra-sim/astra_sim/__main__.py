"""`python -m astra_sim`: replay Chakra ET files and print ASTRA-Sim's per-NPU report lines."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Collection
from pathlib import Path

from astra_sim.chakra_et import CASYS_NUMBERING, UPSTREAM_NUMBERING, ChakraFormatError, read_et
from astra_sim.engine import Engine, EngineConfig, GraphError
from astra_sim.memory import TIER_KEYS, TIER_NAMES, UPSTREAM_KEYS, MemorySystem, is_upstream
from astra_sim.network import load_network
from astra_sim.system import KNOWN_KEYS, SystemConfig
from astra_sim.topology import total_npus
from llmsim_core.cli_guard import guarded
from llmsim_core.errors import InputError
from llmsim_core.strict_json import closest, load_file


class _Fail(Exception):
    """A bad input file: printed as one `error:` line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message}, command line, see 'python -m astra_sim --help'",
              file=sys.stderr)
        raise SystemExit(2)


def _json(path: Path, what: str) -> dict:
    """A JSON file read strictly (UTF-8, no NaN or repeated keys)."""
    if not path.is_file():
        raise _Fail(f"{what} not found, {path}, pass an existing file")
    try:
        return load_file(path, "fix the file")
    except InputError as exc:
        raise _Fail(str(exc)) from None


def _check_keys(raw: object, known: Collection[str], what: str, path: str) -> None:
    """Refuse a key outside `known`: the binaries ignore it, so a misspelt key would silently
    leave its default in place."""
    if not isinstance(raw, dict):
        return  # the file's reader reports a value that is not an object
    for key in raw:
        if key not in known:
            near = closest(key, known, cutoff=0.5)
            fix = f"did you mean '{near}'?" if near else \
                f"use one of {', '.join(sorted(known))}"
            raise _Fail(f"unknown key {key[:40]!r} in the {what}, {path}, {fix}")


def _check_memory_keys(raw: object, path: str) -> None:
    """The keys of an upstream flat memory JSON, or of casys tiers and each tier."""
    if not isinstance(raw, dict):
        return  # MemorySystem.from_json_dict reports it
    if is_upstream(raw):
        _check_keys(raw, UPSTREAM_KEYS, "memory file", path)
        return
    _check_keys(raw, TIER_NAMES.values(), "memory file", path)
    for tier in TIER_NAMES.values():
        _check_keys(raw.get(tier), TIER_KEYS, f"memory file's {tier}", path)


def _comm_groups(raw: object, path: str) -> dict[str, tuple[int, ...]]:
    """`{"1": [0, 1], ...}`: group id to NPU ids."""
    if not isinstance(raw, dict) or not all(
            isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool)
                                        for x in v) for v in raw.values()):
        raise _Fail(f"bad comm group file (expected an object of NPU id lists), {path}, fix the "
                    "file")
    return {str(k): tuple(v) for k, v in raw.items()}


def _roofline(raw: dict) -> tuple[bool, float]:
    """`roofline-enabled` (0 or 1) and `peak-perf` (TFLOPS, finite and non-negative)."""
    enabled, peak = raw.get("roofline-enabled", 0), raw.get("peak-perf", 0)
    if enabled not in (0, 1) or isinstance(enabled, float):
        raise ValueError(f"roofline-enabled must be 0 or 1, got {enabled!r}")
    if isinstance(peak, bool) or not isinstance(peak, int | float) or not 0 <= peak < 1e12:
        raise ValueError(f"peak-perf must be a number of TFLOPS in [0, 1e12), got {peak!r}")
    return bool(enabled), float(peak)


def run(args: argparse.Namespace) -> list[str]:
    """Load everything, replay, and return the report lines."""
    try:
        dims = load_network(Path(args.network))
    except FileNotFoundError:
        raise _Fail(f"network file not found, {args.network}, pass an existing file") from None
    except ValueError as exc:
        raise _Fail(f"bad network file ({exc}), {args.network}, fix the file") from None
    try:
        system_raw = _json(Path(args.system), "system file")
        _check_keys(system_raw, KNOWN_KEYS, "system file", args.system)
        system = SystemConfig.from_json_dict(system_raw)
        roofline, peak_tflops = _roofline(system_raw)
    except ValueError as exc:
        raise _Fail(f"bad system file ({exc}), {args.system}, fix the file") from None
    n = total_npus(dims)
    memory = None
    if args.memory:
        memory_raw = _json(Path(args.memory), "memory file")
        _check_memory_keys(memory_raw, args.memory)
        try:
            memory = MemorySystem.from_json_dict(memory_raw, n)
        except (ValueError, KeyError) as exc:
            raise _Fail(f"bad memory file ({exc}), {args.memory}, fix the file") from None
    groups = {}
    if args.comm_group:
        groups = _comm_groups(_json(Path(args.comm_group), "comm group file"), args.comm_group)
    numbering = CASYS_NUMBERING if args.dialect == "casys" else UPSTREAM_NUMBERING
    graphs = {}
    for npu in range(n):
        path = Path(f"{args.workload}.{npu}.et")
        if not path.is_file():
            raise _Fail(f"missing workload file for NPU {npu}, {path}, write one file per NPU "
                        f"(the network has {n})")
        try:
            graphs[npu] = read_et(path, numbering)[1]
        except ChakraFormatError as exc:
            raise _Fail(f"bad Chakra trace ({exc}), {path}, regenerate the file") from None
    config = EngineConfig(
        dims=dims, system=system, aware=args.congestion_aware,
        duration_unit_ns=1 if args.dialect == "casys" else 1000,
        roofline=roofline, peak_tflops=peak_tflops, comm_groups=groups)
    try:
        result = Engine(config, memory).replay(graphs)
    except (GraphError, ValueError) as exc:
        raise _Fail(f"cannot replay ({exc}), {args.workload}.*.et, fix the graphs") from None
    return [f"sys[{npu}] finished, {result.finish_ns[npu]} cycles, exposed communication "
            f"{result.exposed_comm_ns[npu]} cycles." for npu in sorted(graphs)]


@guarded
def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    p = _Parser(prog="python -m astra_sim", description=__doc__)
    p.add_argument("--workload", required=True, help="trace prefix: NPU i reads PREFIX.i.et")
    p.add_argument("--network", required=True, help="network.yml")
    p.add_argument("--system", required=True, help="system.json")
    p.add_argument("--memory", help="memory JSON (upstream flat or casys tiers)")
    p.add_argument("--comm-group", help="comm-group JSON {\"1\": [0, 1], ...}")
    p.add_argument("--congestion-aware", action="store_true",
                   help="per-link FIFO network model (1-D topologies)")
    p.add_argument("--dialect", choices=("upstream", "casys"), default="upstream",
                   help="node-type numbering and duration unit of the traces")
    args = p.parse_args(argv)
    try:
        lines = run(args)
    except _Fail as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
