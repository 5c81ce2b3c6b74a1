"""The Python API: `simulate(cluster_config, dataset=None, requests=None, **options)`."""

from __future__ import annotations

import argparse
import difflib
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from inference_serving.cluster_config import ClusterConfig, cluster_from_dict, load_cluster_config
from inference_serving.dataset_reader import request_from_record, sort_by_arrival
from inference_serving.flags import build_parser, options_from_args, request_count
from inference_serving.fleet import FleetSamples
from inference_serving.instance import Instance
from inference_serving.observers import Observer, hooks
from inference_serving.options import RunOptions
from inference_serving.outputs import RequestRecord
from inference_serving.power import PowerReport
from inference_serving.report import summary_numbers
from inference_serving.request import Request
from inference_serving.runner import console_observers, execute, file_observers
from inference_serving.scheduler.base import Batch
from inference_serving.sim_log import SimLogger
from inference_serving.simulator import SimResult
from llmsim_core.args import integer, number
from llmsim_core.errors import InputError
from llmsim_core.paths import DEFAULT_CLUSTER_CONFIG, resolve_user_path


@dataclass(frozen=True, slots=True)
class Window:
    """One closed log window: its end time and mean rates over it."""

    time_s: float
    prompt_tok_s: float
    generation_tok_s: float


@dataclass(slots=True)
class Results:
    """A finished run: per-request records (the CSV's rows, in its order), the summary (the
    `--metrics-json` content), the per-window throughput series and the diagnostic lines;
    `power` holds the energy per node and component and the power per window (per node too)
    when every node has a power block."""

    requests: list[RequestRecord]
    summary: dict
    windows: list[Window]
    diagnostics: list[str] = field(default_factory=list)
    power: PowerReport | None = None

    def to_pandas(self) -> Any:
        """The request records as a pandas DataFrame, one column per field."""
        try:
            import pandas
        except ImportError:
            raise InputError("pandas is not installed", "Results.to_pandas()",
                             "pip install 'llmservingsim-py[pandas]'") from None
        columns = RequestRecord.__slots__
        return pandas.DataFrame([[getattr(r, c) for c in columns] for r in self.requests],
                                columns=list(columns))


class ResultsCollector(Observer):
    """Gathers a run's windows and request records as they come, and at the end its summary."""

    def __init__(self, routing_time_instance_id: bool) -> None:
        self.routing_time_instance_id = routing_time_instance_id
        self.fleet: FleetSamples | None = None
        self.windows: list[Window] = []
        self.records: dict[int, list[RequestRecord]] = {}
        self.results: Results | None = None

    def on_batch_end(self, inst: Instance, batch: Batch, end_ns: int,
                     finished: list[Request]) -> None:
        """Keep the records of the requests `batch` finished."""
        if finished:
            self.records.setdefault(inst.index, []).extend(
                RequestRecord.of(r, inst.model.name, self.routing_time_instance_id)
                for r in finished)

    def on_window(self, time_ns: int, rates: tuple[float, float]) -> None:
        """Keep the window."""
        self.windows.append(Window(time_ns / 1e9, *rates))

    def on_finish(self, result: SimResult) -> None:
        """Build the results (records in CSV order: per instance, then completion)."""
        assert self.fleet is not None  # set when the observers are made
        records = [r for index in sorted(self.records) for r in self.records[index]]
        self.results = Results(records, summary_numbers(result, self.fleet), self.windows,
                               power=result.power)


def _option_names(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.dest != "help"}


def _check_option(name: str, value: object, action: argparse.Action) -> None:
    where = f"simulate({name}=...)"
    if action.nargs == 0:  # a switch
        ok = isinstance(value, bool)
    elif action.type is integer:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif action.type is request_count:
        ok = (isinstance(value, int) and not isinstance(value, bool)) or value == "all"
    elif action.type is number:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    else:
        ok = value is None or isinstance(value, str | os.PathLike)
    if not ok:
        raise InputError(f"option {name} got {value!r}", where,
                         f"pass {'True or False' if action.nargs == 0 else 'a valid value'}")
    if action.choices is not None and value is not None and value not in action.choices:
        raise InputError(f"option {name} got {value!r}", where,
                         "use one of " + ", ".join(map(str, action.choices)))


def _namespace(options: dict[str, Any]) -> argparse.Namespace:
    """The CLI's defaults overridden by `options` (by flag destination name), checked."""
    parser = build_parser()
    actions = _option_names(parser)
    args = parser.parse_args([])
    for name, value in options.items():
        action = actions.get(name)
        if action is None:
            close = difflib.get_close_matches(name, list(actions), n=1)
            hint = f"did you mean {close[0]}?" if close else "see 'python main.py --help' " \
                "(option names are the flags' with _ for -)"
            raise InputError(f"unknown option {name!r}", "simulate()", hint)
        _check_option(name, value, action)
        if action.type is request_count and value == "all":
            value = 0
        setattr(args, name, str(value) if isinstance(value, os.PathLike) else value)
    return args


def check_options(options: dict[str, Any]) -> RunOptions:
    """The run options `options` give simulate() with requests passed in, checked as it does."""
    return options_from_args(_namespace(options), need_dataset=False)


def _cluster(config: str | os.PathLike | dict) -> tuple[ClusterConfig, str]:
    """The validated cluster and the path recorded for it in the options."""
    if isinstance(config, dict):
        return cluster_from_dict(config, "cluster_config dict"), str(DEFAULT_CLUSTER_CONFIG)
    if not isinstance(config, str | os.PathLike):
        raise InputError(f"cluster_config must be a path or a dict, got "
                         f"{type(config).__name__}", "simulate()", "pass a path or a dict")
    path = resolve_user_path(str(config))
    return load_cluster_config(path), str(path)


def _requests(records: Iterable[Any]) -> list[Request]:
    """Fresh requests (ids = positions) from dataset-style dicts or Request-like objects."""
    out = []
    for rid, record in enumerate(records):
        if isinstance(record, dict):
            out.append(request_from_record(record, rid, f"requests[{rid}]"))
        elif all(hasattr(record, k) for k in ("prompt", "output", "arrival")):
            out.append(request_from_record({"input_toks": record.prompt,
                                            "output_toks": record.output,
                                            "arrival_time_ns": record.arrival}, rid,
                                           f"requests[{rid}]"))
        else:
            raise InputError(f"request record of type {type(record).__name__}",
                             f"requests[{rid}]", "pass dicts with input_toks, output_toks and "
                             "arrival_time_ns, or Request objects")
    if not out:
        raise InputError("no requests given", "simulate(requests=...)", "pass at least one")
    return out


def simulate(cluster_config: str | os.PathLike | dict, dataset: str | os.PathLike | None = None,
             requests: Iterable[Any] | None = None, *, verbose: bool = False,
             observers: Sequence[Observer] = (), **options: Any) -> Results:
    """Simulate serving `dataset` (a .jsonl trace) or `requests` on a cluster.

    `cluster_config` is a path or an already parsed config dict; `options` are the command
    line's options by name (`max_num_seqs=256`, `request_routing_policy="RAND"`, ...), output
    files included. Nothing is printed unless `verbose` is True, which prints what the command
    line prints (diagnostics are kept in `Results.diagnostics` otherwise). `observers` receive
    the loop's events after the built-in ones; when one of them has a batch hook, every running
    request's fields are kept current in every iteration (no streaming decodes).
    """
    if (dataset is None) == (requests is None):
        raise InputError("give exactly one of dataset and requests", "simulate()",
                         "pass a .jsonl path or an iterable of request records")
    args = _namespace(options)
    cluster, args.cluster_config = _cluster(cluster_config)
    args.dataset = str(dataset) if dataset is not None else None
    run_options: RunOptions = options_from_args(args, need_dataset=requests is None)
    if not verbose:
        run_options = replace(run_options, progress=False)
    sink = None if verbose else io.StringIO()
    log = SimLogger(run_options.log_level, sink)
    loaded = None
    if requests is not None:
        loaded = _requests(requests)
        if sort_by_arrival(loaded):
            log.warning("Dataset", "requests are not sorted by arrival_time_ns; sorted them "
                        "(request ids stay positions)")
    collector = ResultsCollector(run_options.compat.routing_time_instance_id)

    def observers_for(instances: list[Instance], total: int,
                      fleet: FleetSamples) -> list[Observer]:
        collector.fleet = fleet
        if hooks(list(observers), "on_batch_start") or hooks(list(observers), "on_batch_end"):
            # A caller's observer may read running requests' fields in every iteration.
            for inst in instances:
                stop = getattr(inst.scheduler, "stop_streaming", None)
                if stop is not None:
                    stop()
        console = console_observers(run_options, instances, cluster, total, fleet) \
            if verbose else []
        return [*console, *file_observers(run_options, fleet, instances, total), collector,
                *observers]

    execute(run_options, cluster, log, observers_for, loaded,
            note=lambda line: log.warning("Run", line))
    results = collector.results
    assert results is not None  # on_finish always runs when execute returns
    if sink is not None:
        results.diagnostics = sink.getvalue().splitlines()
    return results
