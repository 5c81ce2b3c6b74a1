"""The PyTorch profiler on the CPU: a tiny model end to end, then the simulator uses its tables."""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json

import pytest

from llm_profile.profile import parse_lengths, parse_tokens
from tests.conftest import REPO
from tests.test_cli_errors import run_main

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="PyTorch is not installed (pip install -e '.[profile]')")
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
        "max_position_embeddings": 4096}
# A PhiMoE-style tiny model: LayerNorm instead of RMSNorm, a router and expert rows.
TINY_MOE = TINY | {"model_type": "phimoe", "num_local_experts": 4, "num_experts_per_tok": 2}
DENSE_ROWS = {"embedding", "input_layernorm", "q_proj", "k_proj", "v_proj", "rope", "attn",
              "o_proj", "post_layernorm", "gate_proj", "up_proj", "act_fn", "down_proj",
              "final_layernorm", "lm_head"}
# A Qwen3-style tiny model: explicit head_dim (q width 128 ≠ hidden 64) and per-head q/k norms.
TINY_QWEN3 = TINY | {"model_type": "qwen3", "head_dim": 32}
MOE_ROWS = DENSE_ROWS - {"gate_proj", "up_proj", "down_proj"} | {
    "gate", "expert.w1", "expert.w2", "expert.w3"}


def test_token_lists():
    assert parse_tokens("pow2") == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048]
    assert parse_tokens("all")[-1] == 2048 and len(parse_tokens("all")) == 2048
    assert parse_tokens("1-3,8") == [1, 2, 3, 8]


@needs_torch
@pytest.mark.parametrize("config,expected", [
    (TINY, DENSE_ROWS), (TINY_MOE, MOE_ROWS), (TINY_QWEN3, DENSE_ROWS | {"qk_norm"})],
    ids=["dense", "moe", "qk-norm"])
def test_tiny_cpu_profile_feeds_the_simulator(tmp_path, config, expected):
    from llm_profile.profile import main

    configs = tmp_path / "configs"
    (configs / "test").mkdir(parents=True)
    (configs / "test/tiny.json").write_text(json.dumps(config))
    out = tmp_path / "perf"
    assert main(["--model", "test/tiny", "--hardware", "CPU-test", "--tp", "1,2",
                 "--tokens", "1-64", "--prefill-chunks", "32,64", "--kv-lengths", "0,64",
                 "--batch-sizes", "1,2", "--model-configs", str(configs), "--out", str(out),
                 "--repeats", "2", "--warmup", "1"]) == 0
    for tp in (1, 2):
        with (out / f"CPU-test/test/tiny/tp{tp}/layers.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        names = {r["layer_name"] for r in rows}
        assert names == expected
        assert all(int(r["latency(ns)"]) > 0 and r["tp_size"] == str(tp) for r in rows)
        assert len(rows) == len(names) * 64
    cluster = json.loads((REPO / "cluster_config/single_node_tp2_instance.json").read_text())
    instance = cluster["nodes"][0]["instances"][0]
    instance.update(model_name="test/tiny", hardware="CPU-test")
    instance["npu_mem"]["mem_size"] = 1
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(cluster))
    done = run_main(["--cluster-config", str(path), "--dataset", "dataset/example_trace.jsonl",
                     "--perf-models", str(out), "--model-configs", str(configs),
                     "--check-invariants", "--num-req", "3"])
    assert done.returncode == 0, done.stderr
    assert "Total requests:" in done.stdout


def test_missing_torch_or_bad_tp_is_one_error_line(tmp_path):
    configs = tmp_path / "configs"
    (configs / "test").mkdir(parents=True)
    (configs / "test/tiny.json").write_text(json.dumps(TINY))
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "llm_profile.profile", "--model", "test/tiny",
                           "--hardware", "X", "--tp", "3", "--model-configs", str(configs),
                           "--out", str(tmp_path / "out"), "--tokens", "1"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("error: ")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text", ["99999999999999999999", "1-99999999999", "100000000", "3-1",
                                  "0", "x"])
def test_token_lists_beyond_the_profiled_range_are_refused_before_any_work(text):
    with pytest.raises(argparse.ArgumentTypeError, match="bad token list"):
        parse_tokens(text)


@pytest.mark.parametrize("text", ["99999999999999999999", "-1", "131073"])
def test_kv_lengths_beyond_the_profiled_range_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match="bad KV length list"):
        parse_lengths(text)
