"""Profiled-table lookups (serving.md §6.3, §6.5) on the measured LLMServingSim profiles."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from llm_profile.perf_model import AttentionBatch
from llm_profile.profile_tables import read_grid
from llm_profile.profiled import ProfiledPerfModel
from llmsim_core.errors import InputError
from tests.conftest import DATA, needs_data

A6000 = DATA / "perf_models/A6000/meta-llama/Llama-3.1-8B/tp1"
TPU = DATA / "perf_models/TPU-v6e-1/meta-llama/Llama-3.1-8B/tp1"


def model(directory: Path, tpu: bool = False, warnings: list | None = None) -> ProfiledPerfModel:
    sink = warnings if warnings is not None else []
    return ProfiledPerfModel(directory, 1, tpu, sink.append)


def grid_value(path: Path, a: int, b: int) -> int:
    with path.open() as handle:
        for row in csv.reader(handle):
            if row[0] == str(a) and row[1] == str(b):
                return int(row[2])
    raise KeyError((a, b))


@needs_data
def test_exact_layer_rows_are_returned_verbatim():
    perf = model(A6000)
    with (A6000 / "layers.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["layer_name"] == "q_proj"]
    for row in rows[::97]:
        assert perf.layer_ns("q_proj", int(row["input"])) == int(row["latency(ns)"])


@needs_data
def test_tokens_past_the_table_extrapolate_linearly_with_one_warning():
    warnings: list[str] = []
    perf = model(A6000, warnings=warnings)
    y1, y2 = perf.layer_ns("q_proj", 2047), perf.layer_ns("q_proj", 2048)
    assert perf.layer_ns("q_proj", 2050) == int(y2 + 2 * (y2 - y1))
    perf.layer_ns("q_proj", 4000)
    assert len(warnings) == 1 and "extrapolating" in warnings[0]


@needs_data
def test_prefill_attention_key_rounds_up_and_counts_decodes_in_the_chunk():
    perf = model(A6000)
    # q = 100 and 50 plus 3 decodes: sqrt(100² + 50² + 3) = 111.8 -> 112 -> 128 (next 32);
    # prior KV 10 + 70 = 80 -> 128 (next 64). Decodes: mean len (300+301+302)/3 = 301 -> 320.
    batch = AttentionBatch(prefill_q=(100, 50), prefill_kv=(10, 70), decode_lens=(300, 301, 302))
    prefill = grid_value(A6000 / "predictions/attn_prefill_predictions.csv", 128, 128)
    decode = grid_value(A6000 / "predictions/attn_decode_predictions.csv", 3, 320)
    assert perf.attention_ns(batch) == prefill + decode


@needs_data
def test_decode_batches_past_the_grid_extrapolate():
    warnings: list[str] = []
    path = DATA / "perf_models/H100/meta-llama/Llama-3.1-70B/tp4/predictions/"\
        "attn_decode_predictions.csv"
    perf = ProfiledPerfModel(path.parents[1], 4, False, warnings.append)
    v255, v256 = grid_value(path, 255, 128), grid_value(path, 256, 128)
    got = perf.attention_ns(AttentionBatch((), (), tuple([128] * 258)))
    assert got == int(v256 + 2 * (v256 - v255))
    assert any("outside the prediction grid" in w for w in warnings)


@needs_data
def test_tpu_uses_nearest_token_count_and_one_ns_for_missing_ops():
    perf = model(TPU, tpu=True)
    assert perf.layer_ns("k_proj", 100) == 1
    with (TPU / "layers.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["layer_name"] == "act_fn"]
    assert len(rows) == 1
    assert perf.layer_ns("act_fn", 1500) == int(rows[0]["latency(ns)"])


def test_missing_column_names_the_file(tmp_path):
    (tmp_path / "layers.csv").write_text("layer_name,input,tp_size,latency(ns)\nq_proj,1,1,5\n")
    with pytest.raises(InputError) as err:
        model(tmp_path)
    assert "kv_cache" in str(err.value) and "layers.csv" in str(err.value)


def test_non_numeric_latency_names_the_line(tmp_path):
    (tmp_path / "layers.csv").write_text("layer_name,input,kv_cache,tp_size,latency(ns)\n"
                                         "q_proj,1,0,1,fast\n")
    with pytest.raises(InputError) as err:
        model(tmp_path)
    assert "line 2" in str(err.value)


def test_gpu_table_interpolates_between_measured_points(tmp_path):
    (tmp_path / "layers.csv").write_text("layer_name,input,kv_cache,tp_size,latency(ns)\n"
                                         "q_proj,1,0,1,100\nq_proj,11,0,1,200\n"
                                         "q_proj,11,0,1,999\n")
    pred = tmp_path / "predictions"
    pred.mkdir()
    (pred / "attn_prefill_predictions.csv").write_text(
        "kv_cache_size,prefill_chunk_size,prediction\n0,32,10\n0,64,20\n64,32,30\n64,64,40\n")
    (pred / "attn_decode_predictions.csv").write_text(
        "batch_size,kv_cache_size,prediction\n1,0,5\n1,64,7\n2,0,9\n2,64,11\n2,64,11\n")
    warnings: list[str] = []
    perf = model(tmp_path, warnings=warnings)
    assert perf.layer_ns("q_proj", 11) == 200  # duplicate key: the first row wins, and says so
    assert len(warnings) == 1 and "1 operator(s) twice at one token count with different " \
        "latencies, e.g. q_proj at 11 tokens: 200 and 999 ns; the first row is used" in warnings[0]
    assert perf.layer_ns("q_proj", 6) == 150
    # Decode of two requests of mean length 64 -> grid (2, 64) = 11.
    assert perf.attention_ns(AttentionBatch((), (), (60, 68))) == 11
    # One 40-token prefill on 0 prior KV -> chunk key 64, kv key 0 -> 20.
    assert perf.attention_ns(AttentionBatch((40,), (0,), ())) == 20


def test_optional_operator_missing_from_the_table_is_priced_by_the_fallback(tmp_path):
    from llm_profile.hardware_catalog import load_hardware
    from llm_profile.roofline import RooflinePerfModel
    from llmsim_core.model_config import load_model_config
    from llmsim_core.paths import MODEL_CONFIG_DIR

    (tmp_path / "layers.csv").write_text("layer_name,input,kv_cache,tp_size,latency(ns)\n"
                                         "q_proj,1,0,1,100\nq_proj,8,0,1,200\n")
    (tmp_path / "attention.csv").write_text(
        "prefill_chunk_size,kv_cache_size,batch_size,is_prefill,p50_ns\n"
        "32,0,1,True,10\n0,64,1,False,5\n")
    qwen = load_model_config("Qwen/Qwen3-32B", MODEL_CONFIG_DIR)
    roofline = RooflinePerfModel(qwen, load_hardware("H100"), 1)
    warnings: list[str] = []
    perf = ProfiledPerfModel(tmp_path, 1, False, warnings.append, roofline)
    assert perf.layer_ns("qk_norm", 8) == roofline.layer_ns("qk_norm", 8) > 0
    perf.layer_ns("qk_norm", 4)
    assert len(warnings) == 1 and "qk_norm" in warnings[0] and "roofline" in warnings[0]
    # Operators of the existing layer list stay mandatory.
    with pytest.raises(InputError, match="no rows for operator 'rope'"):
        perf.layer_ns("rope", 8)
    # Without a fallback the optional operator is an error naming the file too.
    with pytest.raises(InputError, match="layers.csv"):
        ProfiledPerfModel(tmp_path, 1, False, warnings.append).layer_ns("qk_norm", 8)


def test_a_grid_cell_listed_twice_with_two_values_uses_the_last_and_says_so(tmp_path):
    path = tmp_path / "grid.csv"
    path.write_text("batch_size,kv_cache_size,prediction\n1,0,5\n1,0,6\n1,0,6\n1,64,7\n"
                    "2,0,8\n2,64,9\n")
    warnings: list[str] = []
    grid = read_grid(path, ("batch_size", "kv_cache_size", "prediction"), warnings.append)
    assert grid.values.tolist() == [[6, 7], [8, 9]]
    assert len(warnings) == 1 and "lists (batch_size=1, kv_cache_size=0) twice with different " \
        "predictions (5 and 6 ns); the last row is used" in warnings[0]
