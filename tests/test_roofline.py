"""Roofline perf model and hardware catalogue: worked numbers and agreement with profiles.

`PYTHONPATH=.:astra-sim python -m tests.test_roofline` prints the measured-vs-roofline table.
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest

from llm_profile.hardware_catalog import CATALOGUE_DIR, known_hardware, load_hardware
from llm_profile.perf_model import AttentionBatch
from llm_profile.roofline import RooflinePerfModel
from llmsim_core.errors import InputError
from llmsim_core.model_config import ModelConfig, load_model_config
from llmsim_core.op_templates import dense_template
from llmsim_core.paths import MODEL_CONFIG_DIR
from tests.conftest import DATA, needs_data

LLAMA8B = ModelConfig("meta-llama/Llama-3.1-8B", 4096, 32, 32, 8, 14336, 128256, 131072)
LLAMA70B = ModelConfig("meta-llama/Llama-3.1-70B", 8192, 80, 64, 8, 28672, 128256, 131072)
MIXTRAL = ModelConfig("mistralai/Mixtral-8x7B-v0.1", 4096, 32, 32, 8, 14336, 32000, 32768,
                      num_experts=8, experts_per_token=2)
A6000 = load_hardware("A6000")
BLOCK = ("input_layernorm", "q_proj", "k_proj", "v_proj", "rope", "o_proj", "post_layernorm",
         "gate_proj", "up_proj", "act_fn", "down_proj")
PROFILED = [("A6000", LLAMA8B, 1), ("A6000", LLAMA8B, 2), ("H100", LLAMA70B, 1),
            ("H100", LLAMA70B, 2), ("H100", LLAMA70B, 4)]
WITH_GRIDS = [("A6000", LLAMA8B, 1), ("A6000", LLAMA8B, 2), ("H100", LLAMA70B, 4)]

# A6000 at fp16: 154.8 TFLOP/s = 154,800 FLOP/ns, 768 B/ns; GEMM efficiencies 0.72 (compute)
# and 0.93 (memory), 3,000 ns overhead, 128-token tiles.


def test_q_proj_worked_numbers():
    perf = RooflinePerfModel(LLAMA8B, A6000, tp=1)
    # T = 1: 2·4096·4096 = 33.6 MFLOP, bytes (4096² + 4096 + 4096)·2 = 33,570,816.
    # Memory: 33,570,816 / (768 × 0.93) = 47,002 ns ≫ compute 301 ns; + 3,000.
    assert perf.layer_ns("q_proj", 1) == 50_002
    # T = 2048: 68,719,476,736 FLOP / (154,800 × 0.72) = 616,561 ns ≫ memory
    # 67,108,864 B / 714.24 = 93,958 ns; + 3,000.
    assert perf.layer_ns("q_proj", 2048) == 619_561


def test_compute_and_memory_bound_switch():
    tiled = RooflinePerfModel(LLAMA8B, A6000, tp=1)
    # T = 128 (one tile): memory (4096² + 128·8192)·2 / 714.24 = 49,915 > compute 38,535.
    assert tiled.layer_ns("q_proj", 128) == 52_915
    # T = 129 pays two tiles: compute 2·256·4096² / 111,456 = 77,070 > memory 49,938.
    assert tiled.layer_ns("q_proj", 129) == 80_070
    untiled = RooflinePerfModel(LLAMA8B, replace(A6000, efficiency={"gemm_tile": 1}), tp=1)
    # Without tiles the roofs cross where 2T·K·N / 111,456 = (K·N + 8192·T)·2 / 714.24,
    # T = 168.9: T = 168 is still memory-bound, T = 169 compute-bound.
    memory = [(16_777_216 + 8192 * t) * 2 / 714.24 + 3000 for t in (168, 169)]
    compute = [2 * t * 16_777_216 / 111_456 + 3000 for t in (168, 169)]
    assert untiled.layer_ns("q_proj", 168) == int(memory[0]) > int(compute[0])
    assert untiled.layer_ns("q_proj", 169) == int(compute[1]) > int(memory[1])


def test_qwen3_prices_its_per_head_qk_norms():
    qwen = load_model_config("Qwen/Qwen3-32B", MODEL_CONFIG_DIR)
    assert qwen.qk_norm and not LLAMA8B.qk_norm
    block = dense_template(False, 2, qwen.qk_norm).block_ops
    assert block[1:6] == ("q_proj", "k_proj", "v_proj", "qk_norm", "rope")
    assert "qk_norm" not in dense_template(False, 2).block_ops
    # 64 query + 8 key heads of 128 on TP2: 4,608 values per token, RMSNorm's 36 B each and
    # 8 launches, twice: 16 · 4608 · 36 B / (768 × 0.83) B/ns = 4,163 ns, + 16 × 2,000 ns.
    perf = RooflinePerfModel(qwen, A6000, tp=2)
    assert perf.layer_ns("qk_norm", 16) == 4_163 + 32_000


def test_tensor_parallelism_halves_sharded_ops_but_not_experts():
    one = RooflinePerfModel(MIXTRAL, A6000, tp=1)
    two = RooflinePerfModel(MIXTRAL, A6000, tp=2)
    four = RooflinePerfModel(MIXTRAL, A6000, tp=4)
    for op, tokens in (("q_proj", 2048), ("k_proj", 1), ("down_proj", 1024)):
        assert two.layer_ns(op, tokens) - 3000 == pytest.approx(
            (one.layer_ns(op, tokens) - 3000) / 2, rel=0.02)
    for op in ("gate", "expert.w1", "expert.w2", "expert.w3"):
        assert one.layer_ns(op, 512) == two.layer_ns(op, 512) == four.layer_ns(op, 512)
    # A Mixtral expert has the shape of a Llama-3.1-8B MLP projection at TP1.
    dense = RooflinePerfModel(LLAMA8B, A6000, tp=1)
    assert four.layer_ns("expert.w1", 300) == dense.layer_ns("gate_proj", 300)
    assert four.layer_ns("expert.w2", 300) == dense.layer_ns("down_proj", 300)


def test_decode_attention_is_proportional_to_context():
    perf = RooflinePerfModel(LLAMA8B, A6000, tp=1)
    short = perf.attention_ns(AttentionBatch((), (), (512,) * 64))
    long = perf.attention_ns(AttentionBatch((), (), (2048,) * 64))
    # 64 × 2048 tokens × 2·1024·2 B of KV + 64 × 2·4096·2 B of q/out = 537,919,488 B,
    # at 768 × 0.85 B/ns = 824,018 ns, + 8,000.
    assert long == 832_018
    assert (long - 8000) / (short - 8000) == pytest.approx(4, rel=0.01)
    halved = RooflinePerfModel(LLAMA8B, A6000, tp=2).attention_ns(
        AttentionBatch((), (), (2048,) * 64))
    assert halved - 8000 == pytest.approx((long - 8000) / 2, rel=0.01)


def test_prefill_attention_worked_numbers():
    perf = RooflinePerfModel(LLAMA8B, A6000, tp=1)
    # 4 · 2048 · (0 + 2049/2) · 128 · 32 = 34,376,515,584 FLOP / (154,800 × 0.45) + 8,000.
    assert perf.attention_ns(AttentionBatch((2048,), (0,), ())) == 501_490
    prefill = perf.attention_ns(AttentionBatch((512,), (0,), ()))
    decode = perf.attention_ns(AttentionBatch((), (), (300, 300)))
    assert perf.attention_ns(AttentionBatch((512,), (0,), (300, 300))) == prefill + decode


def test_layer_ns_is_memoized_and_positive():
    perf = RooflinePerfModel(MIXTRAL, load_hardware("B200"), tp=8)
    first = perf.layer_ns("act_fn", 1)
    assert perf._cache[("act_fn", 1)] == first == perf.layer_ns("act_fn", 1)
    assert all(perf.layer_ns(op, 1) >= 1 for op in BLOCK + ("embedding", "lm_head", "attn"))
    with pytest.raises(KeyError):
        perf.layer_ns("conv1d", 1)


def test_every_catalogue_file_is_complete():
    assert {"A6000", "RTX3090", "RTX4090", "A100-80GB", "H100", "H200", "B200", "L40S",
            "MI300X", "TPU-v6e-1"} <= set(known_hardware())
    for path in CATALOGUE_DIR.glob("*.json"):
        raw = json.loads(path.read_text())
        assert path.stem == raw["name"]
        spec = load_hardware(raw["name"])
        assert min(spec.mem_bw_gbps, spec.mem_capacity_gb, spec.interconnect_gbps) > 0
        assert 0 < spec.idle_w < spec.tdp_w
        assert min(spec.peak_tflops.values()) > 0 and spec.peak_flops_per_ns(16) > 0
        assert spec.sources and all(isinstance(s, str) and s for s in spec.sources)
        assert spec.notes and RooflinePerfModel(LLAMA8B, spec, 1).layer_ns("q_proj", 1) > 0


def test_fp_bits_pick_the_dtype():
    h100 = load_hardware("H100")
    assert h100.peak_flops_per_ns(16) == 989_400
    assert h100.peak_flops_per_ns(8) == 1_978_900
    assert h100.peak_flops_per_ns(32) == 67_000
    # No FP8 tensor cores on Ampere: 8-bit weights run at the 16-bit rate, not the INT8 one.
    assert A6000.peak_flops_per_ns(8) == 154_800


def test_aliases_and_unknown_hardware():
    assert load_hardware("a100").name == "A100-80GB"
    assert load_hardware("h100").name == "H100"
    with pytest.raises(InputError) as err:
        load_hardware("Abacus9000")
    assert all(name in err.value.fix for name in known_hardware())
    bad = replace(A6000, efficiency={"gemm_computer": 0.5})
    with pytest.raises(InputError, match="gemm_computer"):
        RooflinePerfModel(LLAMA8B, bad, 1)


def read_layers(hw: str, model: ModelConfig, tp: int) -> dict[tuple[str, int], int]:
    """Measured `layers.csv` latencies by (op, tokens); first row of a duplicate key wins."""
    measured: dict[tuple[str, int], int] = {}
    with (DATA / f"perf_models/{hw}/{model.name}/tp{tp}/layers.csv").open() as handle:
        for row in csv.DictReader(handle):
            measured.setdefault((row["layer_name"], int(row["input"])), int(row["latency(ns)"]))
    return measured


def block_sum_errors(hw: str, model: ModelConfig, tp: int) -> np.ndarray:
    """Relative error of the roofline block sum (non-attention ops), tokens 1 … 2048."""
    measured = read_layers(hw, model, tp)
    perf = RooflinePerfModel(model, load_hardware(hw), tp)
    return np.array([sum(perf.layer_ns(op, t) for op in BLOCK)
                     / sum(measured[(op, t)] for op in BLOCK) - 1 for t in range(1, 2049)])


def decode_pairs(hw: str, model: ModelConfig, tp: int, points) -> list[tuple[int, int]]:
    """(roofline ns, prediction-grid ns) for decode batches of `n` requests at context `kv`."""
    path = DATA / f"perf_models/{hw}/{model.name}/tp{tp}/predictions/attn_decode_predictions.csv"
    with path.open() as handle:
        grid = {(int(r["batch_size"]), int(r["kv_cache_size"])): int(r["prediction"])
                for r in csv.DictReader(handle)}
    perf = RooflinePerfModel(model, load_hardware(hw), tp)
    return [(perf.attention_ns(AttentionBatch((), (), (kv,) * n)), grid[(n, kv)])
            for n, kv in points]


@needs_data
@pytest.mark.parametrize("hw,model,tp", PROFILED)
def test_block_sum_tracks_the_measured_profile(hw, model, tp):
    errors = block_sum_errors(hw, model, tp)
    assert abs(np.median(errors)) < 0.10
    assert np.abs(errors).max() <= 0.25


MID_GRID = [(n, kv) for n in (16, 32, 64) for kv in (256, 512, 1024)]


@needs_data
@pytest.mark.parametrize("hw,model,tp", WITH_GRIDS)
def test_decode_attention_is_in_the_ballpark_of_the_grid(hw, model, tp):
    # The grids are noisy at their edges (1 request at 2048 tokens costs more than 64 on the
    # A6000 grid), so only the middle of the grid is compared, within a factor of 3.
    for roofline, grid in decode_pairs(hw, model, tp, MID_GRID):
        assert 1 / 3 < roofline / grid < 3


def main() -> None:
    """Print the measured-vs-roofline comparison (block sums and decode attention)."""
    print("block sum of non-attention ops, roofline / measured - 1 over tokens 1…2048")
    for hw, model, tp in PROFILED:
        e = block_sum_errors(hw, model, tp)
        worst = int(np.abs(e).argmax()) + 1
        print(f"  {hw:6} {model.name:26} tp{tp}  median {np.median(e):+6.1%}  "
              f"p90 |e| {np.quantile(np.abs(e), 0.9):5.1%}  max |e| {np.abs(e).max():5.1%} "
              f"(at {worst} tokens)")
    points = [(1, 512), (1, 2048), (16, 1024), (64, 512), (64, 2048), (256, 1024)]
    print("decode attention per layer, µs: roofline / prediction grid")
    for hw, model, tp in WITH_GRIDS:
        cells = "  ".join(f"{n}×{kv}: {r / 1e3:.0f}/{g / 1e3:.0f}"
                          for (n, kv), (r, g) in zip(points, decode_pairs(hw, model, tp, points),
                                                     strict=True))
        print(f"  {hw:6} {model.name:26} tp{tp}  {cells}")


if __name__ == "__main__":
    main()
