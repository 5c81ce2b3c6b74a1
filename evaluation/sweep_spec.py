"""The sweep spec: a YAML file read strictly (unknown keys, duplicate keys and bad values are
one-line errors) into the configurations, rates and workload of a sweep."""

from __future__ import annotations

import difflib
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluation.sweep_cluster import build_cluster, describe_cluster, hardware_names
from inference_serving.cluster_config import cluster_from_dict
from inference_serving.fleet import Slo
from llmsim_core.bounds import ARRIVAL_NS, SLO_MS, TOKENS, Bound, checked, checked_int
from llmsim_core.errors import InputError
from llmsim_core.paths import resolve_user_path
from llmsim_core.strict_json import load_file

# Far below one request per 10^6 s the first gap already lies beyond the simulator's arrival
# window; near zero it overflows the arrival arithmetic.
RATE = Bound(1e-9, 1e6, "req/s", "a request rate must be positive and below a million per "
             "second")
NUM_REQUESTS = Bound(1, 10_000_000, "", "a sweep point simulates at least one request and at "
                     "most ten million", integer=True)
PARALLEL = Bound(1, 64, "", "a degree of parallelism is a whole number of NPUs", integer=True)
INSTANCES = Bound(1, 4096, "", "instances are counted in whole numbers", integer=True)
SEED = Bound(0, 2**63 - 1, "", "seeds are non-negative 64-bit integers", integer=True)
ATTAINMENT = Bound(0, 100, "%", "it is a percentage of requests", low_open=True)
# Below 1e-3 the gamma shape 1/cv² overflows.
CV = Bound(1e-3, 100, "", "the coefficient of variation of the inter-arrival gaps is positive "
           "and its gamma shape 1/cv² must stay a usable number")
COST = Bound(0, 1e12, "", "a price per GPU is positive", low_open=True)
MEM_GB = Bound(0, 1e9, "GB", "a device memory must hold something", low_open=True)
BW = Bound(1e-3, 1e12, "GB/s", "slower links make every iteration last hours")
# Every point is a whole simulation: a grid beyond ten thousand points is a product of axes
# that exploded (it would run for days), not a sweep anyone reads.
MAX_POINTS = 10_000
MAX_PD = 1024  # instances on one side of a P/D cluster
# Generated arrivals span about num_requests / rate seconds; half the simulator's arrival bound
# leaves room for the random gaps.
MAX_SPAN_S = ARRIVAL_NS.high / 1e9 / 2

# Simulator options the sweep itself sets, each with the spec key that replaces it.
RESERVED = {"dataset": "workload", "cluster_config": "clusters", "num_req":
            "workload.num_requests", "seed": "seed", "slo_ttft_ms": "slo.ttft_ms",
            "slo_tpot_ms": "slo.tpot_ms", "slo_e2e_ms": "slo.e2e_ms"}
# Options that write files or print per run: a sweep point returns numbers only.
PER_RUN_OUTPUTS = ("output", "throughput_output", "metrics_json", "trace_output",
                   "trace_max_requests", "plot_dir", "export_chakra", "chakra_dialect",
                   "quiet", "no_progress", "log_level")
CLUSTER_KEYS = ("name", "model", "hardware", "tp", "pp", "instances", "pd", "mem_gb", "mem_bw",
                "link_bw", "cluster_config")
ARRIVALS = ("poisson", "gamma", "scale")
LATENCIES = ("ttft", "tpot", "itl", "e2e")


@dataclass(frozen=True, slots=True)
class Workload:
    """The requests of every point: generated lengths or a trace's, re-timed to each rate."""

    num_requests: int
    input: str | None
    output: str | None
    trace: Path | None
    arrival: str
    cv: float
    max_total: int


@dataclass(frozen=True, slots=True)
class Capacity:
    """The `--capacity` search: rate bracket, stopping width and the rate to carry."""

    target_rate: float | None
    tolerance: float
    min_rate: float
    max_rate: float


@dataclass(frozen=True, slots=True)
class Configuration:
    """One cluster with one choice of simulator options: a line on the Pareto plot."""

    name: str
    cluster: dict
    settings: dict[str, Any]
    options: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SweepSpec:
    """A validated sweep spec."""

    path: Path
    seed: int
    slo: Slo
    min_attainment_pct: float
    workload: Workload
    rates: tuple[float, ...]
    configurations: tuple[Configuration, ...]
    option_names: tuple[str, ...]
    capacity: Capacity
    pareto_latency: str
    cost: dict[str, float]
    inputs: tuple[Path, ...] = ()  # files the sweep reads (spec, trace, cluster configs)


def _grid_size(r: _Reader, sizes: list[int], key: str) -> None:
    """Refuse a grid whose points (the product of `sizes`) exceed MAX_POINTS."""
    total = 1
    for size in sizes:
        total *= size
        if total > MAX_POINTS:
            raise InputError(f"the grid has more than {MAX_POINTS} points", r.where(key),
                             "sweep fewer values per axis (or split the sweep)")


# The numbers a spec may write: plain decimals (and YAML's .inf / .nan, which the bounds
# refuse with their own message). YAML 1.1 also reads `1:30` as 90 (base 60), `017` as 15,
# `0x1f`, `0b101` and `1_000`; each is more likely a typo or a string than that number.
_PLAIN_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)")
_PLAIN_FLOAT = re.compile(r"[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?|"
                          r"[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)")


def _strict_loader() -> type:
    """A yaml SafeLoader that refuses a mapping key given twice (YAML keeps the last),
    aliases (`*name`: a spec needs none, and nested ones expand a few bytes into billions of
    values) and numbers not written in plain decimal (see _PLAIN_INT)."""
    import yaml

    class Loader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise InputError("YAML aliases (*name) are not allowed in a sweep spec",
                                 f"line {mark.line + 1}", "write the values out")
            return super().compose_node(parent, index)

    def mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
        out: dict = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise InputError(f"a key must be a name, got {type(key).__name__}",
                                 f"line {key_node.start_mark.line + 1}", "write key: value")
            if key in out:
                raise InputError(f"key {key!r} appears twice",
                                 f"line {key_node.start_mark.line + 1}", "keep one of them")
            out[key] = loader.construct_object(value_node, deep=True)
        return out

    def plain(grammar: re.Pattern, construct: Any) -> Any:
        def number(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
            value = construct(loader, node)
            if not grammar.fullmatch(node.value):
                raise InputError(f"number {node.value[:40]!r} is not plain decimal (YAML 1.1 "
                                 f"reads it as {str(value)[:40]})",
                                 f"line {node.start_mark.line + 1}", "write the number in plain "
                                 "decimal digits, or quote it if it is text")
            return value
        return number

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    Loader.add_constructor("tag:yaml.org,2002:int",
                           plain(_PLAIN_INT, yaml.SafeLoader.construct_yaml_int))
    Loader.add_constructor("tag:yaml.org,2002:float",
                           plain(_PLAIN_FLOAT, yaml.SafeLoader.construct_yaml_float))
    return Loader


def _read_yaml(path: Path) -> Any:
    import yaml

    if path.exists() and not path.is_dir() and not path.is_file():
        # A FIFO or device would block the read (or never end): a spec is a regular file.
        raise InputError("the sweep spec is not a regular file (a FIFO or device)", str(path),
                         "pass an existing YAML file")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read the sweep spec ({exc.strerror})", str(path),
                         "pass an existing YAML file") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (offset {exc.start})", str(path),
                         "save the spec as UTF-8") from None
    try:
        return yaml.load(text, Loader=_strict_loader())
    except InputError as exc:
        raise InputError(exc.what, f"{path} {exc.where}", exc.fix) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path} line {mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise InputError(f"not valid YAML ({problem})", where, "fix the YAML syntax") from None
    except RecursionError:
        raise InputError("YAML nested too deeply", str(path), "fix the YAML") from None
    except ValueError:  # an integer literal longer than Python's 4300-digit limit
        raise InputError("a number with thousands of digits", str(path), "fix the YAML") from None


class _Reader:
    """Checks values of one spec file, naming each by its key path."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def where(self, key: str) -> str:
        return f"{self.path}: {key}"

    def mapping(self, value: Any, key: str, allowed: tuple[str, ...],
                required: tuple[str, ...] = ()) -> dict:
        """`value` as a dict with only `allowed` keys and every `required` one."""
        if not isinstance(value, dict):
            raise InputError(f"'{key or 'the spec'}' must be a mapping, got "
                             f"{type(value).__name__}", self.where(key or "top level"),
                             "write key: value lines")
        for name in value:
            if name not in allowed:
                close = difflib.get_close_matches(str(name), allowed, n=1)
                hint = f"did you mean '{close[0]}'?" if close else \
                    f"known keys: {', '.join(allowed)}"
                raise InputError(f"unknown key '{name}'", self.where(
                    f"{key}.{name}" if key else str(name)), hint)
        for name in required:
            if name not in value:
                raise InputError(f"missing key '{name}'", self.where(key or "top level"),
                                 f"add {name}: ...")
        return value

    def number(self, value: Any, key: str, bound: Bound) -> float:
        return checked(value, bound, key, self.where(key), "pass a value in that range")

    def integer(self, value: Any, key: str, bound: Bound) -> int:
        return checked_int(value, bound, key, self.where(key), "pass a value in that range")

    def text(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"'{key}' must be a non-empty string, got {value!r}",
                             self.where(key), "quote a name")
        return value

    def choice(self, value: Any, key: str, choices: tuple[str, ...]) -> str:
        if value not in choices:
            raise InputError(f"'{key}' must be one of {', '.join(choices)}, got {value!r}",
                             self.where(key), "pick one of them")
        return value

    def axis(self, value: Any, key: str) -> list:
        """A grid axis: a list of values, or one value."""
        if isinstance(value, list):
            if not value:
                raise InputError(f"'{key}' is an empty list", self.where(key),
                                 "give at least one value")
            if len(set(map(_same_value, value))) != len(value):
                raise InputError(f"'{key}' repeats a value", self.where(key),
                                 "list each value once")
            return value
        return [value]


def _same_value(value: Any) -> Any:
    """What makes two axis values the same: 5 and 5.0 are one rate."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return repr(value)


def check_span(r: _Reader, rate: float, key: str, workload: Workload) -> None:
    """Generated arrivals at `rate` must stay within what the simulator accepts:
    num_requests / rate at most MAX_SPAN_S."""
    span_s = workload.num_requests / rate
    if workload.trace is None and span_s > MAX_SPAN_S:
        raise InputError(f"'{key}' {rate:g} req/s spreads {workload.num_requests} requests over "
                         f"about {span_s:.3g} s, beyond {MAX_SPAN_S:.3g} s of arrivals",
                         r.where(key), f"use a rate of at least "
                         f"{workload.num_requests / MAX_SPAN_S:.3g} req/s or fewer requests")


def _workload(r: _Reader, raw: Any) -> Workload:
    keys = ("num_requests", "input", "output", "trace", "arrival", "cv", "max_total")
    w = r.mapping(raw, "workload", keys, ("num_requests",))
    num = r.integer(w["num_requests"], "workload.num_requests", NUM_REQUESTS)
    trace = None
    if "trace" in w:
        for key in ("input", "output", "max_total"):
            if key in w:
                raise InputError(f"'workload.{key}' has no effect with a trace",
                                 r.where(f"workload.{key}"), "drop it or drop trace")
        trace = resolve_user_path(r.text(w["trace"], "workload.trace"))
        if not trace.is_file():
            raise InputError("trace not found", r.where("workload.trace"),
                             "give the path of a .jsonl trace")
    arrival = r.choice(w.get("arrival", "poisson"), "workload.arrival", ARRIVALS)
    if arrival == "scale" and trace is None:
        raise InputError("arrival 'scale' re-times a trace's own gaps", r.where(
            "workload.arrival"), "add workload.trace or use poisson or gamma")
    if "cv" in w and arrival != "gamma":
        raise InputError("'workload.cv' has an effect only with arrival gamma",
                         r.where("workload.cv"), "set arrival: gamma or drop cv")
    cv = r.number(w.get("cv", 1.0), "workload.cv", CV)
    max_total = r.integer(w.get("max_total", 2048), "workload.max_total", TOKENS)
    lengths = {}
    for key in ("input", "output"):
        lengths[key] = None if trace else r.text(w.get(key, "sharegpt"), f"workload.{key}")
    if trace is None:
        from dataset.generate import parse_dist
        try:
            low = sum(parse_dist(lengths[k], k == "output").minimum for k in ("input", "output"))
        except ValueError as exc:
            raise InputError(str(exc), r.where("workload"), "fix input or output") from None
        if low > max_total:
            raise InputError(f"the shortest request ({low} tokens) exceeds max_total "
                             f"{max_total}", r.where("workload.max_total"), "raise max_total")
    return Workload(num, lengths["input"], lengths["output"], trace, arrival, cv, max_total)


def _pd(r: _Reader, value: Any, key: str) -> tuple[int, int]:
    parts = value.split(":") if isinstance(value, str) else []
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() and 1 <= int(p) <= MAX_PD
                                  for p in parts):
        raise InputError(f"'{key}' must be 'P:D' (prefill and decode instance counts, each "
                         f"in 1..{MAX_PD}), got {value!r}", r.where(key),
                         "write e.g. pd: '1:3'")
    return int(parts[0]), int(parts[1])


def _cluster_variants(r: _Reader, raw: Any, index: int) -> list[tuple[str, dict]]:
    """The clusters one `clusters` entry expands to, each with its name."""
    key = f"clusters[{index}]"
    entry = r.mapping(raw, key, CLUSTER_KEYS)
    if "cluster_config" in entry:
        others = sorted(set(entry) - {"name", "cluster_config"})
        if others:
            raise InputError(f"'{others[0]}' has no effect with cluster_config",
                             r.where(f"{key}.{others[0]}"), "edit the cluster file instead")
        path = resolve_user_path(r.text(entry["cluster_config"], f"{key}.cluster_config"))
        if not path.is_file():
            raise InputError("cluster config not found", r.where(f"{key}.cluster_config"),
                             "give the path of a cluster JSON")
        data = load_file(path, "fix the cluster config")
        cluster_from_dict(data, str(path))
        return [(r.text(entry.get("name", path.stem), f"{key}.name"), data)]
    for name in ("model", "hardware"):
        if name not in entry:
            raise InputError(f"missing key '{name}'", r.where(key),
                             f"add {name}: ... or cluster_config: FILE")
    if "pd" in entry and "instances" in entry:
        raise InputError("'instances' and 'pd' both set the instance count",
                         r.where(f"{key}.instances"), "keep one of them")
    axes = {name: r.axis(entry[name], f"{key}.{name}")
            for name in CLUSTER_KEYS if name in entry and name != "name"}
    _grid_size(r, [len(v) for v in axes.values()], key)
    varied = [name for name, values in axes.items() if len(values) > 1]
    out = []
    for combo in itertools.product(*axes.values()):
        values = dict(zip(axes, combo, strict=True))
        where = key + "".join(f" {n}={values[n]}" for n in varied)
        tp = r.integer(values.get("tp", 1), f"{key}.tp", PARALLEL)
        pp = r.integer(values.get("pp", 1), f"{key}.pp", PARALLEL)
        pd = _pd(r, values["pd"], f"{key}.pd") if "pd" in values else None
        count = r.integer(values.get("instances", 1), f"{key}.instances", INSTANCES)
        mem = {n: r.number(values[n], f"{key}.{n}", MEM_GB if n == "mem_gb" else BW)
               for n in ("mem_gb", "mem_bw", "link_bw") if n in values}
        cluster = build_cluster(r.text(values["model"], f"{key}.model"),
                                r.text(values["hardware"], f"{key}.hardware"), tp, pp, count,
                                pd, mem, r.where(where))
        label = entry.get("name")
        if label is None:
            s = describe_cluster(cluster)
            split = f"{s['prefill']}P{s['decode']}D" if pd else f"x{count}"
            label = f"{s['hardware']}-tp{tp}pp{pp}-{split}"
        else:
            label = r.text(label, f"{key}.name") + "".join(
                f"-{n}={values[n]}" for n in varied)
        out.append((label, cluster))
    return out


def _options(r: _Reader, raw: Any) -> tuple[list[dict], tuple[str, ...]]:
    """Every combination of the `options` grid, each checked as simulate() would."""
    from inference_serving.api import check_options
    from inference_serving.flags import build_parser

    known = tuple(a.dest for a in build_parser()._actions if a.dest != "help")
    opts = r.mapping(raw or {}, "options", known)
    for name in opts:
        if name in RESERVED:
            raise InputError(f"option '{name}' is set by the sweep", r.where(f"options.{name}"),
                             f"use the spec's {RESERVED[name]} instead")
        if name in PER_RUN_OUTPUTS:
            raise InputError(f"option '{name}' writes or prints per run; a sweep point keeps "
                             "numbers only", r.where(f"options.{name}"), "drop it")
    axes = {name: r.axis(value, f"options.{name}") for name, value in opts.items()}
    _grid_size(r, [len(v) for v in axes.values()], "options")
    combos = [dict(zip(axes, c, strict=True)) for c in itertools.product(*axes.values())]
    for combo in combos:
        try:
            check_options(combo)
        except InputError as exc:
            raise InputError(exc.what, r.where("options") + f" ({exc.where})", exc.fix) from None
    return combos, tuple(opts)


def _slo(r: _Reader, raw: Any) -> tuple[Slo, float]:
    s = r.mapping(raw, "slo", ("ttft_ms", "tpot_ms", "e2e_ms", "min_attainment_pct"))
    values = {k: r.number(s[k], f"slo.{k}", SLO_MS) if s.get(k) is not None else None
              for k in ("ttft_ms", "tpot_ms", "e2e_ms")}
    slo = Slo(**values)
    if not slo.active:
        raise InputError("no latency objective set", r.where("slo"),
                         "set at least one of ttft_ms, tpot_ms, e2e_ms")
    return slo, r.number(s.get("min_attainment_pct", 99), "slo.min_attainment_pct", ATTAINMENT)


def _capacity(r: _Reader, raw: Any, rates: tuple[float, ...], workload: Workload) -> Capacity:
    c = r.mapping(raw or {}, "capacity", ("target_rate", "tolerance", "min_rate", "max_rate"))
    target = r.number(c["target_rate"], "capacity.target_rate", RATE) \
        if c.get("target_rate") is not None else None
    # Defaults are clamped to the rate range, so a legal rate never makes an unset key an error.
    low = r.number(c.get("min_rate", max(min(rates) / 16, RATE.low)), "capacity.min_rate", RATE)
    if "min_rate" in c:
        check_span(r, low, "capacity.min_rate", workload)
    elif workload.trace is None:  # the default lowest probe stays where the arrivals fit
        low = max(low, workload.num_requests / MAX_SPAN_S)
    high = r.number(c.get("max_rate", min(max(rates) * 16, RATE.high)), "capacity.max_rate", RATE)
    if low >= high:
        raise InputError(f"capacity.min_rate {low:g} is not below max_rate {high:g}",
                         r.where("capacity"), "widen the bracket")
    tolerance = r.number(c.get("tolerance", max(min(rates) / 20, RATE.low)), "capacity.tolerance",
                         RATE)
    return Capacity(target, tolerance, low, high)


def load_spec(path: Path) -> SweepSpec:
    """Read and validate a sweep spec; every fault is an InputError naming its key."""
    r = _Reader(path)
    top_keys = ("seed", "slo", "workload", "rates", "clusters", "options", "capacity",
                "pareto", "cost")
    spec = r.mapping(_read_yaml(path), "", top_keys, ("slo", "workload", "rates", "clusters"))
    seed = r.integer(spec.get("seed", 42), "seed", SEED)
    slo, attainment = _slo(r, spec["slo"])
    workload = _workload(r, spec["workload"])
    if not isinstance(spec["rates"], list):  # documented as a list, unlike the grid axes
        raise InputError(f"'rates' must be a list of rates, got {spec['rates']!r:.40}",
                         r.where("rates"), "write e.g. rates: [5] or rates: [5, 10]")
    rates = tuple(r.number(v, f"rates[{i}]", RATE)
                  for i, v in enumerate(r.axis(spec["rates"], "rates")))
    for i, rate in enumerate(rates):
        check_span(r, rate, f"rates[{i}]", workload)
    if not isinstance(spec["clusters"], list) or not spec["clusters"]:
        raise InputError("'clusters' must be a non-empty list", r.where("clusters"),
                         "list at least one cluster")
    _grid_size(r, [len(rates), len(spec["clusters"])], "rates")
    clusters = [c for i, raw in enumerate(spec["clusters"]) for c in _cluster_variants(r, raw, i)]
    combos, option_names = _options(r, spec.get("options"))
    _grid_size(r, [len(rates), len(clusters), len(combos)], "clusters")
    varied = [n for n in option_names if isinstance(spec["options"][n], list)
              and len(spec["options"][n]) > 1]
    configs = []
    for (label, cluster), combo in itertools.product(clusters, combos):
        name = label + "".join(f" {n}={combo[n]}" for n in varied)
        configs.append(Configuration(name, cluster, describe_cluster(cluster), combo))
    names = [c.name for c in configs]
    for name in names:
        if names.count(name) > 1:
            raise InputError(f"two configurations are named '{name}'", r.where("clusters"),
                             "give each cluster entry its own name")
    pareto = r.mapping(spec.get("pareto") or {}, "pareto", ("latency",))
    latency = r.choice(pareto.get("latency", "e2e"), "pareto.latency", LATENCIES)
    cost_raw = r.mapping(spec.get("cost") or {}, "cost",
                         tuple(sorted(set().union(*(hardware_names(c.cluster) for c in configs)))))
    cost = {hw: r.number(v, f"cost.{hw}", COST) for hw, v in cost_raw.items()}
    inputs = (path, *((workload.trace,) if workload.trace else ()),
              *(resolve_user_path(c["cluster_config"]) for c in spec["clusters"]
                if isinstance(c, dict) and "cluster_config" in c))
    return SweepSpec(path, seed, slo, attainment, workload, tuple(sorted(rates)), tuple(configs),
                     option_names, _capacity(r, spec.get("capacity"), rates, workload), latency,
                     cost, inputs)
