"""Every run ends: schedulers always make progress, and a stalled run stops with one line."""

from __future__ import annotations

import time

import pytest

from inference_serving import cli, simulator
from inference_serving.scheduler.vllm import VllmScheduler
from tests.test_cli_errors import run_main

EXAMPLE = "dataset/example_sharegpt_req100_rate10.jsonl"


@pytest.mark.parametrize("flags", [
    ["--max-num-seqs", "1"],
    ["--max-num-seqs", "2", "--max-num-batched-tokens", "64"],
])
def test_prioritize_prefill_with_few_slots_finishes(tmp_path, flags):
    out = tmp_path / "out.csv"
    start = time.perf_counter()
    done = run_main(["--dataset", EXAMPLE, "--num-req", "40", "--prioritize-prefill",
                     *flags, "--check-invariants", "--output", str(out)])
    assert done.returncode == 0, done.stderr
    assert time.perf_counter() - start < 5
    assert len(out.read_text().splitlines()) == 41


def test_prioritize_prefill_runs_decodes_when_no_prompt_can_start():
    from inference_serving.kv_cache import KVCacheManager
    from inference_serving.request import Request
    from inference_serving.scheduler.base import SchedulerOptions

    sched = VllmScheduler(SchedulerOptions(max_num_batched_tokens=64, max_num_seqs=1,
                                           block_size=16, prioritize_prefill=True),
                          KVCacheManager(64, 16))
    first, second = Request(0, 0, 8, 4), Request(1, 0, 8, 4)
    sched.add(first)
    batch = sched.schedule(0)
    sched.update(batch, 10)
    sched.add(second)  # prompt work waits, but the only sequence slot is taken
    batch = sched.schedule(10)
    assert batch is not None and batch.requests == [first] and batch.decode == [True]


class NeverSchedules(VllmScheduler):
    """A scheduler that accepts requests and never runs them."""

    def schedule(self, now):
        return None


def test_a_scheduler_that_never_runs_anything_stops_the_run(tmp_path):
    module = tmp_path / "stuck_scheduler.py"
    module.write_text("from tests.test_progress import NeverSchedules as Stuck\n")
    out = tmp_path / "out.csv"
    start = time.perf_counter()
    done = run_main(["--dataset", EXAMPLE, "--num-req", "5", "--scheduler", "CUSTOM",
                     "--custom-scheduler", "stuck_scheduler:Stuck", "--output", str(out)],
                    cwd=tmp_path)
    assert time.perf_counter() - start < 10
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: the run stalled")
    assert "instance 0 holds 5 unfinished request(s)" in errors[0]
    assert "Traceback" not in done.stderr and not out.exists()


@pytest.mark.parametrize("flags,message", [
    (["--chakra-dialect", "upstream"], "--chakra-dialect has no effect without --export-chakra"),
    (["--astra-sim-dialect", "upstream"], "--astra-sim-dialect has no effect without"),
    (["--trace-max-requests", "5"], "--trace-max-requests has no effect without --trace-output"),
    (["--max-batch", "8", "--max-num-seqs", "16"], "name the same limit and disagree"),
    (["--pricer", "replay", "--network-backend", "external", "--astra-sim-bin", "main.py"],
     "contradicts --network-backend external"),
    (["--enable-attn-prediction", "--perf-model", "roofline"], "has no effect with --perf-model"),
    (["--pricer", "fast"], "argument --pricer: invalid choice"),
    (["--expert-routing-policy", "RR"], "--expert-routing-policy RR has no effect: no instance "
                                        "serves a mixture-of-experts model"),
    (["--no-moe-combine-alltoall"], "--no-moe-combine-alltoall has no effect"),
])
def test_flags_that_would_do_nothing_or_contradict_are_errors(tmp_path, flags, message):
    out = tmp_path / "out.csv"
    done = run_main(["--dataset", EXAMPLE, "--num-req", "5", *flags, "--output", str(out)])
    assert done.returncode == 2
    assert done.stderr.count("error:") == 1 and message in done.stderr
    assert not out.exists()


def test_agreeing_limits_and_the_legacy_max_batch_are_accepted(tmp_path):
    for flags in (["--max-batch", "16", "--max-num-seqs", "16"],
                  ["--scheduler", "legacy", "--max-batch", "8", "--max-num-seqs", "16"]):
        done = run_main(["--dataset", EXAMPLE, "--num-req", "5", *flags])
        assert done.returncode == 0, done.stderr


class ZeroTokens(VllmScheduler):
    """Batches whose entries compute nothing: the run could never progress."""

    def schedule(self, now):
        batch = super().schedule(now)
        if batch is not None:
            batch.tokens = [0] * len(batch.tokens)
        return batch


class QueuesTwice:
    """A router that queues the request itself as well: the run could never finish it."""

    def __init__(self, seed):
        pass

    def route(self, request, candidates):
        candidates[0].scheduler.add(request)
        return candidates[0]


class FinishesEarly(VllmScheduler):
    """`update` reports a request as finished before it is."""

    def update(self, batch, now):
        done = super().update(batch, now)
        return done or [r for r in batch.requests if r.end < 0][:1]


class RunsPreempted(VllmScheduler):
    """Lists the requests it runs as preempted too."""

    def schedule(self, now):
        batch = super().schedule(now)
        if batch is not None:
            batch.preempted, batch.num_preempted = list(batch.requests), len(batch.requests)
        return batch


class EmptyBatch(VllmScheduler):
    """A batch without requests instead of None."""

    def schedule(self, now):
        batch = super().schedule(now)
        if batch is not None:
            batch.requests, batch.tokens, batch.decode = [], [], []
        return batch


@pytest.mark.parametrize("cls,message", [
    ("ZeroTokens", "error: ZeroTokens.schedule gave request 0 0 tokens, outside 1..45"),
    ("EmptyBatch", "error: EmptyBatch.schedule returned a batch without requests"),
    ("RunsPreempted", "error: RunsPreempted.schedule returned a batch that runs a request it "
                      "also lists as preempted"),
])
def test_a_scheduler_batch_that_cannot_progress_stops_the_run(tmp_path, cls, message):
    (tmp_path / "bad_scheduler.py").write_text(f"from tests.test_progress import {cls} as X\n")
    out = tmp_path / "out.csv"
    done = run_main(["--dataset", EXAMPLE, "--num-req", "5", "--scheduler", "CUSTOM",
                     "--custom-scheduler", "bad_scheduler:X", "--output", str(out)],
                    cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].startswith(message), done.stderr
    assert "Traceback" not in done.stderr and not out.exists()


def test_a_router_queueing_the_request_itself_stops_the_run(tmp_path):
    (tmp_path / "twice.py").write_text("from tests.test_progress import QueuesTwice as X\n")
    done = run_main(["--dataset", EXAMPLE, "--num-req", "5", "--request-routing-policy",
                     "CUSTOM", "--custom-router", "twice:X", "--cluster-config",
                     "cluster_config/single_node_multi_instance.json"], cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].startswith(
        "error: QueuesTwice.route changed what an instance's scheduler holds while routing "
        "request 0")


def test_a_scheduler_reporting_unfinished_requests_stops_the_run(tmp_path):
    (tmp_path / "early.py").write_text("from tests.test_progress import FinishesEarly as X\n")
    done = run_main(["--dataset", EXAMPLE, "--num-req", "5", "--scheduler", "CUSTOM",
                     "--custom-scheduler", "early:X"], cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].startswith(
        "error: FinishesEarly.update returned request 0, which has not finished"), done.stderr


def test_a_run_whose_clock_runs_away_stops_with_one_line(tmp_path, monkeypatch, capsys):
    """More status windows than any run prints (twice the arrival bound, here lowered to
    500: 5 requests over about 2 s at 1 ms windows) end the run with the longest iteration
    named."""
    monkeypatch.setattr(simulator, "status_window_limit", lambda instances: 500)
    out = tmp_path / "out.csv"
    status = cli.main(["--dataset", EXAMPLE, "--num-req", "5", "--quiet", "--no-progress",
                       "--log-interval", "0.001", "--output", str(out)])
    err = capsys.readouterr().err.splitlines()
    assert status == 2 and len(err) == 1, err
    assert err[0].startswith("error: the run reached 1.001 s of simulated time (1000 status "
                             "windows) with "), err
    assert "the longest iteration took 0.138531 s" in err[0] and not out.exists()


def test_prompts_over_the_budget_without_chunking_run_alone_with_one_warning(tmp_path):
    out = tmp_path / "out.csv"
    done = run_main(["--dataset", "dataset/example_trace.jsonl", "--num-req", "3", "--quiet",
                     "--max-num-batched-tokens", "16", "--no-enable-chunked-prefill",
                     "--output", str(out)])
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if "exceeds the 16-token budget" in line]
    assert len(warned) == 1 and "request 0: prompt of 89 tokens" in warned[0]
    assert len(out.read_text().splitlines()) == 4
