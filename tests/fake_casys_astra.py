"""A stand-in for the casys AnalyticalAstra binary: its flags and stdin/stdout protocol.

Replays each loaded workload with the in-process engine. Used by the tests only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from astra_sim.chakra_et import CASYS_NUMBERING, read_et
from astra_sim.engine import Engine, EngineConfig
from astra_sim.memory import MemorySystem
from astra_sim.network import load_network
from astra_sim.system import SystemConfig
from astra_sim.topology import total_npus

IDLE_STEP_NS = 1_000_000


def main() -> int:
    flags = dict(arg[2:].split("=", 1) for arg in sys.argv[1:])
    dims = load_network(Path(flags["network-configuration"]))
    n = total_npus(dims)
    system = SystemConfig.from_json_dict(json.loads(Path(flags["system-configuration"])
                                                    .read_text()))
    memory_json = json.loads(Path(flags["memory-configuration"]).read_text())
    starts = [int(x) for x in flags.get("start-npu-ids", "").split(",") if x]
    ends = [int(x) for x in flags.get("end-npu-ids", "").split(",") if x]
    bounds = [*starts, n]
    group = {s: [m for m in range(s, bounds[k + 1])] for k, s in enumerate(starts)}
    finish = {}
    iteration = dict.fromkeys(range(n), 0)
    stored: dict[int, int] = {}
    asleep: set[int] = set()

    def load(prefix: str, npus: list[int], now: int) -> None:
        graphs = {m: read_et(Path(f"{prefix}.{m}.et"), CASYS_NUMBERING)[1] for m in npus}
        # A fresh engine per workload: this stand-in does not model FIFO contention between
        # instances (replays happen at load time, so shared FIFOs would be reserved early).
        engine = Engine(EngineConfig(dims, system), MemorySystem.from_json_dict(memory_json, n))
        result = engine.replay(graphs, start=now)
        for m in npus:
            finish[m] = result.finish_ns[m]

    load(flags["workload-configuration"], list(range(n)), 0)
    now = 0
    while True:
        pending = [t for t in finish.values() if t > now]
        now = min(pending) if pending else now + IDLE_STEP_NS
        for npu in [*ends, *starts]:
            print(f"Checking End NPU {npu} ..." if npu in ends else
                  f"Checking Managed Systems for Controller NPU {npu} ...")
            if npu in asleep or finish[npu] > now:
                continue
            # Re-polled while idle, the NPU reports the current tick.
            print(f"[t] [info] sys[{npu}] iteration {iteration[npu]} finished, {now} "
                  f"cycles, exposed communication 0 cycles.")
            print("[t] [info] Waiting", flush=True)
            line = sys.stdin.readline().strip()
            if line == "exit":
                print("Checking Non-Exited Systems ...")
                print("All Request Has Been Exited", flush=True)
                return 0
            if line == "done":
                asleep.add(npu)
            elif line != "pass":
                if npu in starts:
                    members = group[npu]
                    load(line, members, now)
                    for m in members:
                        if m in ends:
                            stored[m] = finish[m]
                            finish[m] = now  # an end NPU starts only when told
                        else:
                            iteration[m] += 1
                else:
                    finish[npu] = max(stored.pop(npu), now)
                    iteration[npu] += 1


if __name__ == "__main__":
    sys.exit(main())
