"""The external pricer: a user-supplied ASTRA-Sim binary replays each plan's graphs
(`--network-backend external`, upstream dialect, engine.md §8.3).

The graphs and inputs of an iteration are written to a temporary folder, the binary replays them
from t = 0 and its per-NPU report lines `sys[i] finished, T cycles` give the iteration latency
(the largest T). Compute durations are whole microseconds in this dialect, so results can
differ from the in-process engine by up to 1 µs per operator. Identical graphs run once.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from functools import partial
from pathlib import Path

from astra_sim.binary import AstraBinary, kill, start
from astra_sim.export import export
from inference_serving.chakra_graph import engine_setup, plan_graphs
from inference_serving.fabric import InstanceFabric
from inference_serving.iteration_cost import IterationCost
from inference_serving.pricers.base import plan_usage
from llmsim_core.bounds import STEP_NS
from llmsim_core.errors import InputError
from llmsim_core.iteration_plan import IterationPlan

REPORT = re.compile(r"sys\[(\d+)\](?: iteration \d+)? finished, (\d+) cycles")


class ExternalPricer:
    """Prices plans by running an ASTRA-Sim binary on their exported graphs."""

    name = "external"

    def __init__(self, fabrics: dict[int, InstanceFabric], num_nodes: int,
                 binary: AstraBinary) -> None:
        self.fabrics = fabrics
        self.num_nodes = num_nodes
        self.binary = binary
        self._runs: dict[IterationPlan, int] = {}

    def price(self, plan: IterationPlan, start_ns: int) -> IterationCost:
        """Run the binary on the plan's graphs (P/D receivers included)."""
        fabric = self.fabrics[plan.instance]
        latency = self._runs.get(plan)
        if latency is None:
            latency = self._run(plan, fabric)
            self._runs[plan] = latency
        return IterationCost(latency, account=partial(plan_usage, plan, fabric))

    def _run(self, plan: IterationPlan, fabric: InstanceFabric) -> int:
        graphs = plan_graphs(plan, fabric, receivers=True)
        config, memory = engine_setup(fabric, self.num_nodes, 1)
        with tempfile.TemporaryDirectory(prefix="astra_") as tmp:
            folder = Path(tmp)
            prefix = export(folder, graphs, config, memory, "upstream")
            stdout, status = self._replay(
                [str(self.binary.path), f"--workload-configuration={prefix}",
                 f"--system-configuration={folder / 'system.json'}",
                 f"--remote-memory-configuration={folder / 'memory.json'}",
                 f"--network-configuration={folder / 'network.yml'}",
                 *((f"--comm-group-configuration={folder / 'comm_group.json'}",)
                   if config.comm_groups else ())])
        where = str(self.binary.path)
        finish = [int(m.group(2)) for m in REPORT.finditer(stdout)]
        if status != 0 or len(finish) != len(graphs):
            raise InputError(f"the ASTRA-Sim binary failed (exit {status}, "
                             f"{len(finish)} of {len(graphs)} report lines)",
                             where, "check the binary runs on the exported files")
        if max(finish) > STEP_NS.high:
            raise InputError(f"the ASTRA-Sim binary reported {max(finish)} cycles for one "
                             f"iteration, above {STEP_NS.high:g} ns ({STEP_NS.why})",
                             where, "check the binary runs on the exported files")
        return max(finish)

    def _replay(self, command: list[str]) -> tuple[str, int]:
        """The binary's stdout and exit status; killed with its children when it outlasts its
        wall time or the run is interrupted."""
        where = str(self.binary.path)
        try:
            # Its stderr is not read: a binary flooding it would hold up the wall-time limit.
            proc = start(command, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        except OSError as exc:
            raise InputError(f"the ASTRA-Sim binary could not be started ({exc.strerror})",
                             where, "pass an executable AnalyticalAstra build") from None
        try:
            stdout, _ = proc.communicate(timeout=self.binary.timeout_s)
        except subprocess.TimeoutExpired:
            kill(proc)
            proc.communicate()
            raise InputError(self.binary.no_answer(), where, "check that the binary runs on "
                             "the exported files, or raise --astra-sim-timeout") from None
        except BaseException:
            kill(proc)
            raise
        return stdout, proc.returncode
