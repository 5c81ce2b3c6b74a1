"""Roofline perf model and hardware catalogue: worked numbers and agreement with profiles."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from inference_serving.errors import InputError
from llm_profile.hardware_catalog import CATALOGUE_DIR, known_hardware, load_hardware
from llm_profile.perf_model import AttentionBatch
from llm_profile.roofline import RooflinePerfModel
from tests.conftest import DATA, needs_data
from tests.test_memory_model import LLAMA8B, MIXTRAL

A6000 = load_hardware("A6000")
BLOCK = ("input_layernorm", "q_proj", "k_proj", "v_proj", "rope", "o_proj", "post_layernorm",
         "gate_proj", "up_proj", "act_fn", "down_proj")


def test_q_proj_worked_numbers():
    perf = RooflinePerfModel(LLAMA8B, A6000, tp=1)
    # T = 1: 2·4096·4096 FLOP = 33.6 MFLOP; bytes (4096² + 2·4096)·2 = 33,570,816, memory bound:
    # 33,570,816 / (768 × 0.93) = 47,002.4 ns + 3,000 ns overhead.
    assert perf.layer_ns("q_proj", 1) == int(33_570_816 / (768 * 0.93) + 3000)
    # T = 2048: 68.7 GFLOP / (154.8e3 FLOP/ns × 0.72) = 616,418 ns + 3,000, compute bound.
    flops = 2 * 2048 * 4096 * 4096
    assert perf.layer_ns("q_proj", 2048) == int(flops / (154_800 * 0.72) + 3000)


def test_tensor_parallelism_halves_sharded_ops_but_not_experts():
    one = RooflinePerfModel(MIXTRAL, A6000, tp=1)
    two = RooflinePerfModel(MIXTRAL, A6000, tp=2)
    big = 2048
    assert two.layer_ns("q_proj", big) - 3000 == pytest.approx((one.layer_ns("q_proj", big)
                                                                 - 3000) / 2, rel=0.01)
    assert two.layer_ns("expert.w1", big) == one.layer_ns("expert.w1", big)


def test_decode_attention_grows_with_context():
    perf = RooflinePerfModel(LLAMA8B, A6000, tp=1)
    short = perf.attention_ns(AttentionBatch((), (), (512,) * 64))
    long = perf.attention_ns(AttentionBatch((), (), (2048,) * 64))
    # 64 × 2048 tokens × 4,096 KV bytes = 537 MB per layer, memory bound at 768 × 0.85 B/ns.
    assert long == int((64 * 2048 * 4096 + 64 * 8192 * 2) / (768 * 0.85) + 8000)
    assert 3.5 < (long - 8000) / (short - 8000) < 4.1


def test_prefill_and_decode_parts_add_up():
    perf = RooflinePerfModel(LLAMA8B, A6000, tp=1)
    prefill = perf.attention_ns(AttentionBatch((512,), (0,), ()))
    decode = perf.attention_ns(AttentionBatch((), (), (300, 300)))
    assert perf.attention_ns(AttentionBatch((512,), (0,), (300, 300))) == prefill + decode


def test_every_catalogue_file_is_complete():
    names = known_hardware()
    assert {"A6000", "RTX3090", "RTX4090", "A100-80GB", "H100", "H200", "B200", "L40S",
            "MI300X", "TPU-v6e-1"} <= set(names)
    for path in CATALOGUE_DIR.glob("*.json"):
        raw = json.loads(path.read_text())
        spec = load_hardware(raw["name"])
        assert spec.mem_bw_gbps > 0 and spec.mem_capacity_gb > 0 and spec.tdp_w > 0
        assert spec.peak_flops_per_ns(16) > 0 and spec.sources


def test_aliases_and_unknown_hardware():
    assert load_hardware("a100").name == "A100-80GB"
    with pytest.raises(InputError) as err:
        load_hardware("Abacus9000")
    assert "H100" in str(err.value)


@needs_data
@pytest.mark.parametrize("hw,model,tp", [("A6000", LLAMA8B, 1), ("A6000", LLAMA8B, 2)])
def test_block_sum_tracks_the_measured_profile(hw, model, tp):
    path = DATA / f"perf_models/{hw}/{model.name}/tp{tp}/layers.csv"
    with path.open() as handle:
        measured = {(r["layer_name"], int(r["input"])): int(r["latency(ns)"])
                    for r in csv.DictReader(handle)}
    perf = RooflinePerfModel(model, load_hardware(hw), tp)
    errors = np.array([sum(perf.layer_ns(op, t) for op in BLOCK)
                       / sum(measured[(op, t)] for op in BLOCK) - 1 for t in range(1, 2049)])
    assert abs(np.median(errors)) < 0.10
    assert np.abs(errors).max() < 0.35
