"""One simulation from validated options: build the instances, run the loop, feed observers."""

from __future__ import annotations

import sys
from collections.abc import Callable

from inference_serving.builder import build_instances
from inference_serving.casys_driver import CasysSimulator
from inference_serving.chakra_graph import ChakraExporter
from inference_serving.cluster_config import ClusterConfig
from inference_serving.dataset_reader import check_windows, load_requests, trace_has_more
from inference_serving.fleet import FleetSamples
from inference_serving.instance import Instance
from inference_serving.kv_report import KvSeries
from inference_serving.memory_report import MemorySeries
from inference_serving.observers import Observer
from inference_serving.options import RunOptions
from inference_serving.outputs import MetricsJson, RequestCsv, ThroughputCsv
from inference_serving.pim_power import pim_busy, pim_power
from inference_serving.plots import PlotData
from inference_serving.power import PowerMeter, no_pim_busy, power_enabled
from inference_serving.report import FinalSummary, PeriodicBlocks, ProgressLine
from inference_serving.request import Request
from inference_serving.request_table import RequestTable
from inference_serving.router import make_router
from inference_serving.run_header import run_header
from inference_serving.scheduler.base import Batch
from inference_serving.sim_log import SimLogger
from inference_serving.simulator import SimResult, Simulator
from inference_serving.timeline import Timeline
from llmsim_core.errors import InputError
from llmsim_core.plugins import describe, is_stop_signal, origin, raised_in


class ChakraExport(Observer):
    """Writes every started batch's Chakra graphs and ASTRA-Sim inputs."""

    def __init__(self, exporter: ChakraExporter) -> None:
        self.exporter = exporter

    def on_batch_start(self, inst: Instance, batch: Batch, start_ns: int, end_ns: int,
                       costs: list) -> None:
        """Export the batch."""
        self.exporter.write(inst, batch)


def console_observers(options: RunOptions, instances: list[Instance], cluster: ClusterConfig,
                      total: int, fleet: FleetSamples) -> list[Observer]:
    """The progress line (if enabled), the status blocks (unless quiet) and the final summary
    with the fleet block."""
    host_sizes = {node.node_id: node.cpu_mem.size_bytes for node in cluster.nodes}
    if not options.quiet:
        print(run_header(options, cluster, instances, instances[0].pricer.name, total))
    progress: list[Observer] = [ProgressLine(total)] if options.progress else []
    cxl = cluster.cxl_mem.memory.size_bytes if cluster.cxl_mem is not None else 0
    blocks: list[Observer] = [] if options.quiet else [PeriodicBlocks(instances, host_sizes, cxl)]
    return [*progress, *blocks,
            FinalSummary(options.log_interval_s,
                         str(options.output) if options.output else None, fleet)]


def warn_line(text: str) -> None:
    """A `warning:` line on stderr (shown with --quiet too: it is about the input)."""
    print(f"warning: {text}", file=sys.stderr)


def file_observers(options: RunOptions, fleet: FleetSamples, instances: list[Instance],
                   total: int) -> list[Observer]:
    """Writers of the output files the options name, in the order they are written."""
    observers: list[Observer] = []
    if options.output is not None:
        observers.append(RequestCsv(options.output, options.compat.routing_time_instance_id))
    if options.throughput_output is not None:
        observers.append(ThroughputCsv(options.throughput_output, options.log_interval_s))
    if options.metrics_json is not None:
        observers.append(MetricsJson(options.metrics_json, fleet))
    if options.trace_output is not None:
        observers.append(Timeline(options.trace_output, instances, total,
                                  options.trace_max_requests))
    if options.plot_dir is not None:
        observers.append(PlotData(options.plot_dir, instances, fleet))
    return observers


class HeldLines:
    """Diagnostics of the set-up held back until it succeeds: a bad input found late in the
    set-up then ends the run with its one `error:` line alone. Once released, lines pass
    straight through."""

    def __init__(self) -> None:
        self.pending: list[Callable[[], None]] = []
        self.holding = True

    def emit(self, show: Callable[[], None]) -> None:
        """Show now, or when released."""
        if self.holding:
            self.pending.append(show)
        else:
            show()

    def release(self) -> None:
        """Show the held lines in order; later ones pass straight through."""
        self.holding = False
        for show in self.pending:
            show()
        self.pending.clear()


def power_meter(options: RunOptions, cluster: ClusterConfig, instances: list[Instance],
                log: SimLogger, held: HeldLines) -> PowerMeter | None:
    """The power meter when every node has a power block (a warning, held until the set-up
    succeeds, names a node without one when others have one); None otherwise."""
    enabled, without = power_enabled(cluster)
    for node in without:
        held.emit(lambda node=node: log.warning(
            "Power", f"node {node} has no power block while other nodes have one; power and "
            "energy are not modelled (add a power block to every node)", node=node))
    if not enabled:
        return None
    if options.astra_sim_bin and options.astra_sim_dialect == "casys":
        held.emit(lambda: log.warning(
            "Power", "the casys ASTRA-Sim driver reports no iteration costs: power counts "
            "static and standby energy only (use the analytical backend for NPU, CPU, DRAM and "
            "link energy)"))
    pim = {inst.spec.node_id: pim_power(inst.plans.pim.device)
           for inst in instances if inst.plans.pim is not None}
    return PowerMeter(cluster, instances, options.log_interval_s,
                      options.compat.energy_at_schedule, options.check_invariants, pim,
                      pim_busy if pim else no_pim_busy)


def execute(options: RunOptions, cluster: ClusterConfig, log: SimLogger,
            observers_for: Callable[[list[Instance], int, FleetSamples], list[Observer]],
            requests: list[Request] | None = None,
            note: Callable[[str], None] = lambda line: None) -> SimResult:
    """Run one simulation; `observers_for(instances, number of requests, fleet samples)` makes
    the observers (the fleet samples are filled before any of them sees a batch end).

    Without `requests`, the first `options.num_req` requests of `options.dataset` are read (0:
    all). `note` receives one-line notes about choices made for the user (a trace cut by
    --num-req).
    """
    held = HeldLines()
    instances = build_instances(
        cluster, options, lambda msg: held.emit(lambda: log.warning("PerfModel", msg)),
        lambda line: held.emit(lambda: print(line, file=sys.stderr)))
    pipelined = [i.index for i in instances if i.spec.pp > 1]
    if pipelined and options.astra_sim_bin:
        raise InputError(f"instance(s) {pipelined} are pipeline-parallel, which --network-backend "
                         "external does not cover yet", "command line",
                         "use npu_group 1 or the analytical backend")
    for inst in instances:
        log.info("Builder", f"{inst.model.name} on {inst.spec.npu_num}x {inst.spec.hardware} "
                 f"(TP{inst.spec.tp}): {inst.plans.perf.name} latencies (attention: "
                 f"{inst.plans.perf.attention_source}), weights "
                 f"{inst.budget.weight_bytes / 2**20:.2f} MiB per NPU, {inst.kv.num_blocks} KV "
                 f"blocks of {options.block_size} tokens", node=inst.spec.node_id,
                 inst=inst.index)
    interval_ns = max(1, round(options.log_interval_s * 1e9))
    max_len = min(i.model.max_position_embeddings for i in instances)
    if requests is None:
        if options.dataset is None:
            raise InputError("no requests given", "dataset", "pass a dataset or requests")
        limit = options.num_req or sys.maxsize
        table, unsorted = load_requests(options.dataset, limit, max_len, interval_ns,
                                        options.prefix_caching, len(instances))
        if options.prefix_caching and \
                all(ids is None for ids in table.token_ids or ()):
            held.emit(lambda: warn_line(f"{options.dataset} has no input_tok_ids: with prefix "
                                        "caching no request can hit"))
        if options.num_req and trace_has_more(options.dataset, options.num_req):
            held.emit(lambda: note(f"note: --num-req {options.num_req} loads the first "
                                   f"{options.num_req} requests of {options.dataset}; pass "
                                   "--num-req all for the whole trace"))
        if unsorted:
            held.emit(lambda: warn_line(f"{options.dataset} is not sorted by arrival_time_ns; "
                                        "sorted it (request ids stay line indices)"))
    else:
        too_long = [r.rid for r in requests if r.prompt + r.output > max_len]
        if too_long:
            raise InputError(f"request {too_long[0]} is longer than the model's maximum length "
                             f"{max_len}", "requests", "shorten it or serve a longer-context model")
        check_windows(requests[-1].arrival, interval_ns, "requests", len(instances))
        table = RequestTable.of(requests)
    router = make_router(options.request_routing_policy, options.seed, options.custom_router)
    fleet = FleetSamples(options.slo)
    observers = [fleet, MemorySeries(instances), *observers_for(instances, len(table), fleet)]
    if options.prefix_caching or options.preemption_mode == "swap":
        observers.insert(0, KvSeries(instances))
    meter = power_meter(options, cluster, instances, log, held)
    if meter is not None:
        # Before the other observers: they show the window power and read the final report.
        observers.insert(1, meter)
        for observer in observers:
            if isinstance(observer, PeriodicBlocks):
                observer.power = meter
    exporter = None
    if options.export_chakra is not None:
        exporter = ChakraExporter(len(cluster.nodes), options.export_chakra,
                                  options.chakra_dialect)
        observers.insert(0, ChakraExport(exporter))
    sim_args = (instances, table, router, interval_ns, log, observers,
                options.check_invariants, options.compat.idle_poll_ns)
    if options.astra_sim_bin and options.astra_sim_dialect == "casys":
        sim = CasysSimulator(*sim_args, cluster=cluster, binary=options.astra_binary)
    else:
        sim = Simulator(*sim_args)
    held.release()  # after the simulator's set-up checks: a failed run shows its error alone
    try:
        return sim.run()
    except BaseException as exc:
        if exporter is not None:
            exporter.discard()
        if options.custom_scheduler and not isinstance(exc, InputError) and \
                not is_stop_signal(exc) and \
                (not isinstance(exc, OSError) or raised_in(exc, options.custom_scheduler)):
            # The simulator trusts a scheduler's batches; a CUSTOM one that breaks the interface
            # (a batch that is not a Batch, a method that raises) fails somewhere inside.
            raise InputError(f"the run failed with the CUSTOM scheduler ({describe(exc)}"
                             f"{origin(exc)})", f"--custom-scheduler "
                             f"{options.custom_scheduler}", "follow the Scheduler interface of "
                             "inference_serving/scheduler/base.py") from None
        raise
