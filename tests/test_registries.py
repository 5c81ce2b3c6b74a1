"""Registries and CUSTOM classes: the shared loader, and each family's user class used end to
end (request router, expert router, scheduler, perf model) with worked numbers."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest

from inference_serving import simulate
from inference_serving.flags import build_parser, options_from_args
from inference_serving.observers import Observer
from inference_serving.scheduler.legacy import LegacyScheduler
from llmsim_core.errors import InputError
from llmsim_core.plugins import construct, load_class
from tests.conftest import REPO
from tests.test_cli_errors import run_main

SINGLE = REPO / "cluster_config/single_node_single_instance.json"
EXAMPLE = REPO / "dataset/example_sharegpt_req100_rate10.jsonl"
HERE = "tests.test_registries"


def cluster(model: str) -> dict:
    """The single-instance A6000 cluster serving `model`."""
    config = json.loads(SINGLE.read_text())
    config["nodes"][0]["instances"][0]["model_name"] = model
    return config


def two_nodes() -> dict:
    """Two single-instance nodes (instances 0 and 1), so no memory is shared."""
    config = cluster("meta-llama/Llama-3.1-8B")
    config["nodes"] *= 2
    config.update(num_nodes=2, inter_node_link_bw=25, inter_node_link_latency=2000)
    return config


def one_request(prompt: int, output: int) -> list[dict]:
    return [{"input_toks": prompt, "output_toks": output, "arrival_time_ns": 0}]


# --- user classes loaded by dotted path below ---------------------------------------------

class ToInstanceOne:
    """Routes every request to instance 1."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def route(self, request, candidates):
        return next(inst for inst in candidates if inst.index == 1)


class ReturnsAnIndex(ToInstanceOne):
    def route(self, request, candidates):
        return 1


class FailsToRoute(ToInstanceOne):
    def route(self, request, candidates):
        return candidates[5]


class ShrinksPrompt(ToInstanceOne):
    def route(self, request, candidates):
        request.prompt = -5
        return candidates[0]


class MarksStarted(ToInstanceOne):
    def route(self, request, candidates):
        request.first_scheduled = 5
        request.itl.append(10**15)
        return candidates[0]


class EmptiesCandidates(ToInstanceOne):
    """Clears the list it is given: the run's own candidate list must not change."""

    def route(self, request, candidates):
        choice = candidates[-1]
        candidates.clear()
        return choice


class NoRoute:
    def __init__(self, seed: int) -> None:
        pass


class BrokenInit:
    def __init__(self, seed: int) -> None:
        raise RuntimeError("no config file")

    def route(self, request, candidates):
        return candidates[0]


class ConstantPerf:
    """Every operator and every layer's attention takes 1,000 ns; an expert row 1,000 ns per
    token."""

    name = "constant"

    def __init__(self, hardware: str, model, tp: int, fp_bits: int) -> None:
        self.tp = tp

    def layer_ns(self, layer: str, tokens: int) -> int:
        return 1000 * tokens if layer.startswith("expert.") else 1000

    def attention_ns(self, batch) -> int:
        return 1000


class FloatPerf(ConstantPerf):
    def layer_ns(self, layer: str, tokens: int) -> int:
        return 12.5


class ShortLayers:
    """An expert router that forgets the last layer."""

    def route(self, tokens, experts, k, layers, seed):
        return [np.full(experts, tokens * k // experts)] * (layers - 1)


class LosesTokens:
    def route(self, tokens, experts, k, layers, seed):
        return [np.zeros(experts, dtype=np.int64)] * layers


class LegacyCopy(LegacyScheduler):
    """The legacy scheduler, loaded as a CUSTOM class."""


class NoHostBytes:
    def __init__(self, options, kv, resources) -> None:
        pass

    def add(self, request): ...
    def schedule(self, now): ...
    def update(self, batch, now): ...
    def num_requests(self): ...
    def requests(self): ...


class BatchSizes(Observer):
    """Records the request count of every started batch."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def on_batch_start(self, inst, batch, start_ns, end_ns, costs) -> None:
        self.sizes.append(len(batch.requests))


# --- the loader -----------------------------------------------------------------------------

@pytest.mark.parametrize("dotted,message", [
    ("ToInstanceOne", "is not a class path"),
    ("tests.test_registries:", "is not a class path"),
    ("tests.test registries:X", "is not a class path"),
    ("tests.no_such_module:X", "cannot import module 'tests.no_such_module' "
                               "(ModuleNotFoundError: No module named 'tests.no_such_module')"),
    ("tests.test_registries:Missing", "'tests.test_registries' has no attribute 'Missing'"),
    ("tests.test_registries:one_request", "is a function, not a class"),
    ("tests.test_registries:NoRoute", "NoRoute lacks route of the Router interface"),
])
def test_loader_errors_are_one_line_and_name_the_problem(dotted, message):
    from inference_serving.router import Router

    with pytest.raises(InputError) as caught:
        load_class(dotted, "--custom-router", Router)
    assert message in caught.value.what
    assert caught.value.where == f"--custom-router {dotted}"


def test_loader_accepts_both_spellings_and_reports_import_time_errors(tmp_path, monkeypatch):
    for dotted in (f"{HERE}:ToInstanceOne", f"{HERE}.ToInstanceOne"):
        loaded = load_class(dotted, "--x")
        assert (loaded.__module__, loaded.__qualname__) == (HERE, "ToInstanceOne")
    (tmp_path / "badplugin.py").write_text("raise ValueError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(InputError, match=r"cannot import module 'badplugin' \(ValueError: boom"):
        load_class("badplugin:X", "--x")


def test_a_failing_constructor_names_the_class_and_the_line():
    with pytest.raises(InputError) as caught:
        construct(BrokenInit, "--custom-router x", 42)
    what = caught.value.what
    assert what.startswith("BrokenInit.__init__ raised RuntimeError: no config file at ")
    raise_line = inspect.getsourcelines(BrokenInit.__init__)[1] + 1
    assert what.endswith(f"test_registries.py:{raise_line}")
    assert caught.value.fix == f"fix {BrokenInit.__module__}.BrokenInit"


# --- request routers ------------------------------------------------------------------------

def test_custom_router_sends_every_request_to_instance_one():
    results = simulate(two_nodes(), dataset=EXAMPLE, num_req=12,
                       request_routing_policy="CUSTOM", custom_router=f"{HERE}:ToInstanceOne")
    assert len(results.requests) == 12
    assert {r.instance_id for r in results.requests} == {1}
    default = simulate(two_nodes(), dataset=EXAMPLE, num_req=12)
    assert {r.instance_id for r in default.requests} == {0, 1}


@pytest.mark.parametrize("cls,message", [
    ("ReturnsAnIndex", "ReturnsAnIndex.route returned 1 for request 0, not one of the candidate "
                       "instances [0, 1]"),
    ("FailsToRoute", "FailsToRoute.route raised IndexError: list index out of range at "),
    ("BrokenInit", "BrokenInit.__init__ raised RuntimeError: no config file"),
    ("ShrinksPrompt", "ShrinksPrompt.route changed field 'prompt' of request 0 from 45 to -5"),
    ("MarksStarted", "MarksStarted.route changed field 'first_scheduled' of request 0 from -1 "
                     "to 5"),
])
def test_a_misbehaving_router_is_an_input_error(cls, message):
    with pytest.raises(InputError) as caught:
        simulate(two_nodes(), dataset=EXAMPLE, num_req=2, request_routing_policy="CUSTOM",
                 custom_router=f"{HERE}:{cls}")
    assert message in caught.value.what
    assert caught.value.where == f"--custom-router {HERE}:{cls}"


def test_a_router_clearing_its_candidate_list_changes_nothing():
    results = simulate(two_nodes(), dataset=EXAMPLE, num_req=6, request_routing_policy="CUSTOM",
                       custom_router=f"{HERE}:EmptiesCandidates")
    assert [r.instance_id for r in results.requests] == [1] * 6


# --- expert routers -------------------------------------------------------------------------

MOE = cluster("microsoft/Phi-mini-MoE-instruct")  # 32 layers, 16 experts, top-2
CONSTANT = {"perf_model": "CUSTOM", "custom_perf_model": f"{HERE}:ConstantPerf"}


def moe_run(policy: str, custom: str | None = None):
    return simulate(MOE, requests=one_request(64, 4), expert_routing_policy=policy,
                    custom_expert_router=custom, **CONSTANT).requests[0]


def test_custom_expert_router_skew_changes_moe_iterations_by_the_worked_amount():
    rr = moe_run("RR")
    hot = moe_run("CUSTOM", "examples.custom_expert_router:HotExperts")
    # A block is 8 operators + attention (9,000 ns) plus experts: 3 rows × 1,000 ns per token
    # of each expert, an idle expert costing one token. Prefill, 64 tokens × top-2: RR spreads
    # 128 tokens over all 16 experts (384,000 ns); the hot router gives 64 to experts 0 and 1
    # and leaves 14 idle (3,000 × (128 + 14) = 426,000 ns). Plus embedding, final norm and
    # lm_head (3,000 ns) and the input load (64 × 4 B at 256 B/ns = 1 ns).
    assert rr.ttft == 32 * (9_000 + 384_000) + 3_000 + 1
    assert hot.ttft - rr.ttft == 32 * 3_000 * 14
    # One decode token goes to two experts under both policies: 3,000 × 16 per layer.
    assert rr.itl == hot.itl == (32 * (9_000 + 48_000) + 3_000,) * 3


@pytest.mark.parametrize("cls,message", [
    ("ShortLayers", "ShortLayers.route returned 31 layers for 32"),
    ("LosesTokens", "LosesTokens.route gave layer 0 counts [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, "
                    "0, 0, 0, 0] for 64 tokens and k=2: each must lie in 0..64 and they "
                    "must sum to 128"),
])
def test_a_wrong_expert_count_shape_is_an_input_error(cls, message):
    with pytest.raises(InputError) as caught:
        moe_run("CUSTOM", f"{HERE}:{cls}")
    assert caught.value.what == message


# --- schedulers -----------------------------------------------------------------------------

def test_custom_scheduler_subclass_caps_every_batch():
    capped, default = BatchSizes(), BatchSizes()
    simulate(SINGLE, dataset=EXAMPLE, num_req=30, scheduler="CUSTOM",
             custom_scheduler="examples.custom_scheduler:CappedBatchScheduler",
             observers=[capped])
    simulate(SINGLE, dataset=EXAMPLE, num_req=30, observers=[default])
    assert max(capped.sizes) == 4 < max(default.sizes)
    assert len(capped.sizes) > len(default.sizes)  # more, smaller batches for the same work


def test_a_custom_legacy_subclass_keeps_the_legacy_option_meanings():
    legacy = simulate(SINGLE, dataset=EXAMPLE, num_req=30, scheduler="legacy")
    custom = simulate(SINGLE, dataset=EXAMPLE, num_req=30, scheduler="CUSTOM",
                      custom_scheduler=f"{HERE}:LegacyCopy")
    assert custom.requests == legacy.requests
    # A 3,000-token prompt over a 2,048-token budget: whole under legacy, two chunks under vllm.
    long = {"requests": one_request(3000, 2), "max_num_batched_tokens": 2048}
    legacy_ttft = simulate(SINGLE, scheduler="legacy", **long).requests[0].ttft
    custom_ttft = simulate(SINGLE, scheduler="CUSTOM", custom_scheduler=f"{HERE}:LegacyCopy",
                           **long).requests[0].ttft
    assert custom_ttft == legacy_ttft != simulate(SINGLE, **long).requests[0].ttft


def test_a_scheduler_without_host_bytes_is_an_input_error():
    with pytest.raises(InputError, match="NoHostBytes has no integer attribute host_bytes"):
        simulate(SINGLE, dataset=EXAMPLE, num_req=2, scheduler="CUSTOM",
                 custom_scheduler=f"{HERE}:NoHostBytes")


# --- perf models ----------------------------------------------------------------------------

def test_constant_custom_perf_model_gives_hand_computed_times():
    results = simulate(SINGLE, requests=one_request(64, 3), **CONSTANT)
    record = results.requests[0]
    # Llama-3.1-8B: 32 blocks of 11 operators + attention, plus embedding, final norm and
    # lm_head: 387 calls of 1,000 ns. The prefill also loads 64 × 4 B at 256 B/ns (1 ns).
    assert record.ttft == 387_001
    assert record.itl == (387_000, 387_000)
    assert record.latency == 387_001 + 2 * 387_000


def test_a_perf_model_answering_fractions_is_an_input_error():
    with pytest.raises(InputError) as caught:
        simulate(SINGLE, requests=one_request(64, 3), perf_model="CUSTOM",
                 custom_perf_model=f"{HERE}:FloatPerf")
    assert caught.value.what == "FloatPerf.layer_ns('embedding', 1) returned 12.5"


def test_roofline_and_profiled_can_be_forced(tmp_path):
    auto = simulate(SINGLE, dataset=EXAMPLE, num_req=5)
    forced = simulate(SINGLE, dataset=EXAMPLE, num_req=5, perf_model="roofline")
    assert forced.requests == auto.requests  # no tables under the default root: auto = roofline
    with pytest.raises(InputError, match="no profile of meta-llama/Llama-3.1-8B on A6000"):
        simulate(SINGLE, dataset=EXAMPLE, num_req=5, perf_model="profiled",
                 perf_models=str(tmp_path))


def test_shipped_perf_model_example_runs_from_the_command_line(tmp_path):
    out = tmp_path / "out.csv"
    done = run_main(["--dataset", str(EXAMPLE), "--num-req", "5", "--perf-model", "CUSTOM",
                     "--custom-perf-model", "examples.custom_perf_model:OutsideCostModel",
                     "--log-level", "INFO", "--output", str(out)])
    assert done.returncode == 0, done.stderr
    assert "outside cost model latencies" in done.stderr
    assert len(out.read_text().splitlines()) == 6


# --- flag combinations ----------------------------------------------------------------------

@pytest.mark.parametrize("flags,message", [
    (["--custom-scheduler", "a:B"], "--custom-scheduler is used only with --scheduler CUSTOM"),
    (["--scheduler", "CUSTOM"], "--scheduler CUSTOM needs a class"),
    (["--custom-router", "a:B"],
     "--custom-router is used only with --request-routing-policy CUSTOM"),
    (["--request-routing-policy", "CUSTOM"], "--request-routing-policy CUSTOM needs a class"),
    (["--custom-expert-router", "a:B"],
     "--custom-expert-router is used only with --expert-routing-policy CUSTOM"),
    (["--expert-routing-policy", "CUSTOM"], "--expert-routing-policy CUSTOM needs a class"),
    (["--custom-perf-model", "a:B"], "--custom-perf-model is used only with --perf-model CUSTOM"),
    (["--perf-model", "CUSTOM"], "--perf-model CUSTOM needs a class"),
])
def test_class_flags_and_custom_policies_go_together(flags, message):
    args = build_parser().parse_args(["--dataset", str(EXAMPLE), *flags])
    with pytest.raises(InputError) as caught:
        options_from_args(args)
    assert caught.value.what == message


def test_a_bad_class_path_on_the_command_line_is_one_error_line():
    done = run_main(["--dataset", str(EXAMPLE), "--scheduler", "CUSTOM",
                     "--custom-scheduler", "examples.custom_scheduler:Nope"])
    assert done.returncode == 2
    assert done.stderr == ("error: 'examples.custom_scheduler' has no attribute 'Nope', "
                           "--custom-scheduler examples.custom_scheduler:Nope, check the class "
                           "name (case matters)\n")
