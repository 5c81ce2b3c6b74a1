"""Time iterations with a user-supplied ASTRA-Sim binary (`--network-backend external`).

Upstream dialect, one run per iteration (engine.md §8.3): the iteration's graphs and inputs
are written to a temporary folder, the binary replays them from t = 0 and its per-NPU report
lines `sys[i] finished, T cycles` give the iteration latency (the largest T). Compute
durations are whole microseconds in this dialect, so results can differ from the in-process
engine by up to 1 µs per operator.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

from astra_sim.export import export
from inference_serving.chakra_graph import instance_engine, iteration_graph
from inference_serving.cluster_config import ClusterConfig, InstanceSpec
from inference_serving.iteration import IterationTimer
from inference_serving.scheduler.base import Batch
from llmsim_core.errors import InputError

REPORT = re.compile(r"sys\[(\d+)\](?: iteration \d+)? finished, (\d+) cycles")


class ExternalIterationTimer(IterationTimer):
    """An IterationTimer whose latencies come from running an ASTRA-Sim binary."""

    def attach(self, cluster: ClusterConfig, spec: InstanceSpec, binary: Path) -> None:
        """Point the timer at the cluster, its instance and the binary to run."""
        self.cluster = cluster
        self.spec = spec
        self.binary = binary
        self._runs: dict[tuple, int] = {}

    def iteration_ns(self, batch: Batch) -> int:
        """Run the binary on this iteration's graphs; memoized by graph content."""
        graph = iteration_graph(self, batch)
        key = tuple((n.type, n.duration_micros,
                     tuple(a.value for a in n.attrs if not a.is_list)) for n in graph)
        cached = self._runs.get(key)
        if cached is not None:
            return cached
        config, memory = instance_engine(self.cluster, self.spec)
        with tempfile.TemporaryDirectory(prefix="astra_") as tmp:
            folder = Path(tmp)
            prefix = export(folder, {r: graph for r in range(self.spec.tp)}, config, memory,
                            "upstream")
            done = subprocess.run(
                [str(self.binary), f"--workload-configuration={prefix}",
                 f"--system-configuration={folder / 'system.json'}",
                 f"--remote-memory-configuration={folder / 'memory.json'}",
                 f"--network-configuration={folder / 'network.yml'}"],
                capture_output=True, text=True, check=False)
        finish = [int(m.group(2)) for m in REPORT.finditer(done.stdout)]
        if done.returncode != 0 or len(finish) != self.spec.tp:
            raise InputError(f"the ASTRA-Sim binary failed (exit {done.returncode}, "
                             f"{len(finish)} of {self.spec.tp} report lines)",
                             str(self.binary), "check the binary runs on the exported files")
        latency = max(finish)
        self._runs[key] = latency
        return latency
