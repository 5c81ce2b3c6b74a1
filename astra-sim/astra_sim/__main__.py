"""`python -m astra_sim`: replay Chakra ET files and print ASTRA-Sim's per-NPU report lines."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from astra_sim.chakra_et import CASYS_NUMBERING, UPSTREAM_NUMBERING, ChakraFormatError, read_et
from astra_sim.engine import Engine, EngineConfig, GraphError
from astra_sim.memory import MemorySystem
from astra_sim.network import load_network
from astra_sim.system import SystemConfig
from astra_sim.topology import total_npus


class _Fail(Exception):
    """A bad input file: printed as one `error:` line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message}, command line, see 'python -m astra_sim --help'",
              file=sys.stderr)
        raise SystemExit(2)


def _json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise _Fail(f"{what} not found, {path}, pass an existing file") from None
    except json.JSONDecodeError as exc:
        raise _Fail(f"malformed JSON ({exc.msg} at line {exc.lineno}), {path}, fix the "
                    "file") from None


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
        system = SystemConfig.from_json_dict(system_raw)
    except ValueError as exc:
        raise _Fail(f"bad system file ({exc}), {args.system}, fix the file") from None
    n = total_npus(dims)
    memory = None
    if args.memory:
        try:
            memory = MemorySystem.from_json_dict(_json(Path(args.memory), "memory file"), n)
        except (ValueError, KeyError) as exc:
            raise _Fail(f"bad memory file ({exc}), {args.memory}, fix the file") from None
    groups = {}
    if args.comm_group:
        raw = _json(Path(args.comm_group), "comm group file")
        groups = {str(k): tuple(int(x) for x in v) for k, v in raw.items()}
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
        roofline=bool(system_raw.get("roofline-enabled", 0)),
        peak_tflops=float(system_raw.get("peak-perf", 0)), comm_groups=groups)
    try:
        result = Engine(config, memory).replay(graphs)
    except (GraphError, ValueError) as exc:
        raise _Fail(f"cannot replay ({exc}), {args.workload}.*.et, fix the graphs") from None
    return [f"sys[{npu}] finished, {result.finish_ns[npu]} cycles, exposed communication "
            f"{result.exposed_comm_ns[npu]} cycles." for npu in sorted(graphs)]


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
