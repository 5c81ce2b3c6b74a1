"""Pipeline parallelism: stage cuts on block boundaries, the pipeline bubble, end-to-end runs."""

from __future__ import annotations

import pytest

from inference_serving.instance import Instance
from inference_serving.iteration_cost import IterationCost
from inference_serving.plan_builder import PlanBuilder, stage_layers
from inference_serving.request import Request
from inference_serving.scheduler.base import Batch
from llmsim_core.model_config import ModelConfig
from llmsim_core.op_templates import dense_template
from tests.plan_helpers import stage_costs
from tests.test_cli_errors import run_main
from tests.test_disaggregation import ConstantPerf


def builder(layers: int, pp: int) -> PlanBuilder:
    model = ModelConfig("m", 256, layers, 4, 2, 512, 1000, 4096)
    return PlanBuilder(0, 0, model, ConstantPerf(), dense_template(False, 1), 1, 2, pp=pp)


@pytest.mark.parametrize("layers,pp,cut", [(32, 1, [32]), (32, 2, [16, 16]),
                                           (32, 3, [11, 11, 10]), (80, 4, [20] * 4),
                                           (10, 4, [3, 3, 2, 2])])
def test_stages_are_cut_on_block_boundaries(layers, pp, cut):
    assert stage_layers(layers, pp) == cut
    assert builder(layers, pp).stage_layers == cut


def test_stage_times_put_embedding_first_and_lm_head_last():
    # Each block: 11 operators × 1,000 ns + 3,000 ns attention = 14,000 ns.
    costs = stage_costs(builder(8, 2), Batch(0, [Request(0, 0, 4, 2)], [4], [False]))
    assert [c.duration_ns for c in costs] == [1000 + 4 * 14_000, 4 * 14_000 + 2000]


class FixedStages:
    """A plan source and pricer whose every stage takes `stage` ns and `send` ns to forward."""

    def __init__(self, pp: int, stage: int, send: int) -> None:
        self.pp, self.stage, self.send = pp, stage, send

    def plans(self, batch):
        return list(range(self.pp))

    def price(self, plan, start_ns):
        return IterationCost(self.stage, forward_ns=self.send if plan < self.pp - 1 else 0)


@pytest.mark.parametrize("pp", [2, 4])
def test_pipeline_bubble_matches_the_formula(pp):
    d, send, k = 10_000, 500, 6
    inst = Instance.__new__(Instance)
    inst.stage_free = [0] * pp
    inst.plans = inst.pricer = FixedStages(pp, d, send)
    ends, now = [], 0
    for _ in range(k):
        first_free, end, _ = inst.pipeline(None, now)
        ends.append(end)
        now = first_free  # the next batch enters when stage 0 frees up
    # Batch j finishes at fill time pp·d + (pp−1)·send plus j stage times.
    assert ends == [pp * d + (pp - 1) * send + j * d for j in range(k)]
    busy = k * d
    bubble = (ends[-1] - busy) / ends[-1]
    assert bubble == pytest.approx(((pp - 1) * d + (pp - 1) * send) / ends[-1])


@pytest.mark.parametrize("config", ["single_node_pp2_instance.json",
                                    "single_node_tp2_pp2_instance.json"])
def test_pipeline_runs_keep_every_invariant(tmp_path, config):
    out = tmp_path / "out.csv"
    done = run_main(["--cluster-config", f"cluster_config/{config}", "--dataset",
                     "dataset/example_sharegpt_req100_rate10.jsonl", "--num-req", "40",
                     "--check-invariants", "--output", str(out)])
    assert done.returncode == 0, done.stderr
    assert len(out.read_text().splitlines()) == 41


def test_more_stages_than_blocks_is_an_error(tmp_path):
    import json

    from tests.test_cli_errors import SINGLE

    cfg = json.loads(json.dumps(SINGLE))
    cfg["nodes"][0]["instances"][0].update(npu_num=64, npu_group=64)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    done = run_main(["--cluster-config", str(path), "--dataset", "dataset/example_trace.jsonl"])
    assert done.returncode == 2 and "pipeline stages" in done.stderr


def test_per_instance_overrides_and_multi_node_conservation(tmp_path):
    import csv
    import json

    from tests.conftest import REPO

    cfg = json.loads((REPO / "cluster_config/dual_node_multi_instance.json").read_text())
    cfg["nodes"][1]["instances"][0].update(max_num_seqs=1, block_size=32,
                                           max_num_batched_tokens=64)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    out = tmp_path / "out.csv"
    done = run_main(["--cluster-config", str(path), "--dataset",
                     "dataset/example_sharegpt_req100_rate10.jsonl", "--num-req", "40",
                     "--check-invariants", "--output", str(out), "--log-level", "DEBUG"])
    assert done.returncode == 0, done.stderr
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(int(r["request id"]) for r in rows) == list(range(40))
    for r in rows:  # round robin over four instances, each request finished where routed
        assert int(r["instance id"]) == int(r["request id"]) % 4
    debug = [line for line in done.stderr.splitlines() if "inst=2]" in line and "batch" in line]
    assert debug and all(" 1 reqs " in line for line in debug)
    assert all(int(line.split(" tokens,")[0].rsplit(" ", 1)[1]) <= 64 for line in debug)
