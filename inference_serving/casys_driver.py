"""Serving driven by a user's casys ASTRA-Sim binary over its stdin/stdout protocol.

With `--network-backend external --astra-sim-dialect casys` the binary owns the clock, as in
the existing LLMServingSim: each time an instance's start NPU reports a finished iteration at
tick T, arrivals up to T are routed, the instance's next batch is written as Chakra files and
its prefix is sent; otherwise the NPU gets `pass`. A batch completes when its start NPU (and,
for a multi-NPU instance, its end NPU) reports it. Idle periods advance in the binary's 1 ms
steps, so queueing delays match the existing simulator's rather than exact arrival times.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from astra_sim import Dimension
from astra_sim.binary import AstraBinary
from astra_sim.casys_protocol import CasysProcess, Poll
from astra_sim.chakra_et import CASYS_NUMBERING, Attr, GlobalMetadata, Node, write_et
from astra_sim.engine import EngineConfig
from astra_sim.export import node_for_dialect, system_json
from astra_sim.network import network_yml
from astra_sim.system import SystemConfig
from inference_serving.chakra_graph import plan_graphs
from inference_serving.cluster_config import ClusterConfig
from inference_serving.instance import Instance
from inference_serving.simulator import SimResult, Simulator
from llmsim_core.bounds import ARRIVAL_NS
from llmsim_core.errors import InputError

# The binary owns the clock: a tick beyond twice the last possible arrival is no serving run
# (and would make the status windows up to it step for hours).
MAX_CLOCK_NS = 2 * ARRIVAL_NS.high


def casys_dims(cluster: ClusterConfig) -> tuple[Dimension, ...]:
    """The existing simulator's network: [N/I, I] when every instance is TP1, else [N/G, G]."""
    specs = cluster.instances
    n = sum(s.npu_num * (2 if s.pd_type == "prefill" else 1) for s in specs)
    g = sum(s.npu_group * (2 if s.pd_type == "prefill" else 1) for s in specs)
    i = len(specs) + sum(s.pd_type == "prefill" for s in specs)
    sizes = [n // i, i] if n == g else [n // g, g]
    if sizes[1] == 1:
        sizes = sizes[:1]
    return tuple(Dimension("FullyConnected", k, cluster.link_bw_gbps, cluster.link_latency_ns)
                 for k in sizes)


class CasysSimulator(Simulator):
    """The serving loop with iteration completion times read from a casys binary."""

    def __init__(self, *args, cluster: ClusterConfig, binary: AstraBinary, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cluster = cluster
        self.binary = binary
        if any(i.spec.pd_type or i.spec.npu_group > 1 for i in self.instances):
            raise InputError("the casys protocol backend drives colocated single-stage "
                             "instances only", "--network-backend external",
                             "use the analytical backend for P/D or pipeline instances")
        if len({i.spec.tp for i in self.instances}) > 1:
            raise InputError("the casys protocol backend needs one TP degree for all "
                             "instances", "--network-backend external",
                             "use equal npu_num or the analytical backend")
        self.dims = casys_dims(cluster)

    def _write_inputs(self, folder: Path) -> dict[str, Path]:
        specs = self.cluster.instances
        system = SystemConfig(local_mem_bw=specs[-1].npu_mem.bw_bytes_per_ns)
        host = self.cluster.nodes[0].cpu_mem
        paths = {"network": folder / "network.yml", "system": folder / "system.json",
                 "memory": folder / "memory.json"}
        paths["network"].write_text(network_yml(self.dims))
        paths["system"].write_text(json.dumps(system_json(EngineConfig(self.dims, system))))
        paths["memory"].write_text(json.dumps({"remote_mem": {
            "memory-type": "PER_NODE_MEMORY_EXPANSION", "mem-latency": int(host.latency_ns),
            "mem-bw": int(host.bw_bytes_per_ns), "num-devices": len(self.cluster.nodes)}}))
        first = max(int(self.requests.arrival[0]), 1)
        duration = min(first, self.counters.interval_ns)
        handler = folder / "event_handler"
        handler.mkdir()
        npus = sum(i.spec.npu_num for i in self.instances)
        for npu in range(npus):
            write_et(handler / f"llm.{npu}.et", GlobalMetadata(),
                     [Node(1, "event_handler", "COMP_NODE", duration_micros=duration)],
                     CASYS_NUMBERING)
        paths["handler"] = handler / "llm"
        return paths

    def _write_batch(self, folder: Path, inst: Instance) -> Path:
        batch = inst.in_flight[0]
        involved = [True] + [False] * (len(self.dims) - 1)
        nodes = []
        plan = inst.plans.plans(batch)[0]
        for node in plan_graphs(plan, inst.fabric)[0]:
            attrs = []
            for a in node.attrs:
                if a.name == "involved_dim":
                    a = Attr("involved_dim", "bool", involved, is_list=True)
                elif a.name == "tensor_device":
                    a = Attr("tensor_device", "uint32", inst.spec.node_id)
                attrs.append(a)
            node.attrs = attrs
            nodes.append(node_for_dialect(node, "casys"))
        target = folder / f"instance{inst.index}_batch{batch.batch_id}"
        target.mkdir()
        for npu in range(inst.spec.first_npu, inst.spec.first_npu + inst.spec.npu_num):
            write_et(target / f"llm.{npu}.et", GlobalMetadata(), nodes, CASYS_NUMBERING)
        return target / "llm"

    def run(self) -> SimResult:
        """Drive the binary until every request has finished."""
        with tempfile.TemporaryDirectory(prefix="casys_") as tmp:
            return self._drive(Path(tmp))

    def _next_poll(self, proc: CasysProcess, starts: dict, ends: dict) -> Poll | None:
        """The binary's next poll, checked: a protocol break, an NPU that starts or ends no
        instance or a clock beyond any run is the binary's fault, reported as one line."""
        try:
            poll = proc.next_poll()
        except TimeoutError as exc:
            raise InputError(str(exc), str(self.binary.path), "check that the binary is "
                             "LLMServingSim's casys build, or raise --astra-sim-timeout") \
                from None
        except RuntimeError as exc:
            raise self._broken(str(exc)) from None
        if poll is not None and poll.npu not in starts and poll.npu not in ends:
            raise self._broken(f"it reported NPU {poll.npu}, which starts or ends no instance")
        if poll is not None and poll.cycles > MAX_CLOCK_NS:
            raise self._broken(f"it reported {poll.cycles} cycles, beyond {MAX_CLOCK_NS:g} ns")
        return poll

    def _reply(self, proc: CasysProcess, line: str) -> None:
        try:
            proc.reply(line)
        except OSError:  # the binary exited (broken pipe) while it should be waiting for us
            raise self._broken("it exited while waiting for a workload: "
                               + " | ".join(proc.stderr)) from None

    def _broken(self, what: str) -> InputError:
        return InputError(f"the ASTRA-Sim binary broke the casys protocol ({what})",
                          str(self.binary.path),
                          "pass LLMServingSim's casys AnalyticalAstra build")

    def _drive(self, folder: Path) -> SimResult:
        paths = self._write_inputs(folder)
        starts = {i.spec.first_npu: i for i in self.instances}
        ends = {i.spec.first_npu + i.spec.npu_num - 1: i for i in self.instances
                if i.spec.npu_num > 1}
        try:
            proc = CasysProcess(self.binary, paths["handler"], paths["system"], paths["memory"],
                                paths["network"], sorted(starts), sorted(ends))
        except OSError as exc:
            raise InputError(f"the ASTRA-Sim binary could not be started ({exc.strerror})",
                             str(self.binary.path),
                             "pass an executable casys AnalyticalAstra build") \
                from None
        loads = {npu: 0 for npu in (*starts, *ends)}
        reported: dict[int, set[int]] = {i.index: set() for i in self.instances}
        waiting_end: dict[int, Path] = {}
        total, finished, end_ns, iterations = len(self.requests), 0, 0, 0
        pending = iter(self.requests)
        upcoming = next(pending, None)
        next_log = self.counters.interval_ns
        now = 0
        ended = False
        try:
            while True:
                poll = self._next_poll(proc, starts, ends)
                if poll is None:
                    break
                inst = starts.get(poll.npu) or ends[poll.npu]
                now = max(now, poll.cycles)
                if inst.in_flight and poll.iteration == loads[poll.npu]:
                    reported[inst.index].add(poll.npu)
                    if len(reported[inst.index]) == (2 if inst.spec.npu_num > 1 else 1):
                        while next_log < poll.cycles and finished < total:
                            self.on_window(next_log, self.counters.close_window())
                            next_log += self.counters.interval_ns
                        finished += self.complete(inst, inst.in_flight[0], poll.cycles)
                        end_ns = max(end_ns, poll.cycles)
                        reported[inst.index] = set()
                if finished == total:
                    self._reply(proc, "exit")
                    continue
                while upcoming is not None and upcoming.arrival <= now:
                    self.arrive(upcoming)
                    upcoming = next(pending, None)
                reply = "pass"
                if poll.npu in waiting_end:
                    reply = str(waiting_end.pop(poll.npu))
                    loads[poll.npu] += 1
                elif poll.npu in starts and not inst.in_flight and \
                        inst.scheduler.num_requests():
                    batch = inst.scheduler.schedule(now)
                    if batch is not None:
                        inst.in_flight.append(batch)
                        iterations += 1
                        prefix = self._write_batch(folder, inst)
                        reply = str(prefix)
                        loads[poll.npu] += 1
                        if inst.spec.npu_num > 1:
                            waiting_end[inst.spec.first_npu + inst.spec.npu_num - 1] = prefix
                self._reply(proc, reply)
            ended = True
        finally:
            proc.close(abort=not ended)
        if finished != total:
            raise InputError(f"the ASTRA-Sim binary stopped with {total - finished} requests "
                             "unfinished", str(self.binary.path), "check the binary's output")
        return self.finish(SimResult(end_ns, iterations, self.counters, self.instances))

