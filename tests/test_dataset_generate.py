"""Trace generator: determinism, arrival process, length distributions; shipped traces."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from dataset.generate import LengthDist, generate_requests, main, parse_dist
from inference_serving.model_config import load_model_config
from tests.conftest import REPO

FIXED = LengthDist("fixed", 100)


def test_same_seed_same_bytes_and_different_seed_differs(tmp_path):
    args = ["--num-req", "50", "--rate", "5"]
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        main(["--out", str(tmp_path / f"{name}.jsonl"), *args, "--seed", seed])
    a, b, c = ((tmp_path / f"{n}.jsonl").read_bytes() for n in "abc")
    assert a == b and a != c


def test_poisson_arrivals_are_non_decreasing_at_the_requested_rate():
    reqs = list(generate_requests(5000, 20.0, FIXED, FIXED, token_ids=False))
    times = np.array([r["arrival_time_ns"] for r in reqs])
    assert (np.diff(times) >= 0).all() and times[0] > 0
    assert 5000 / (times[-1] / 1e9) == pytest.approx(20.0, rel=0.05)


def test_gamma_arrivals_follow_the_coefficient_of_variation():
    reqs = list(generate_requests(5000, 10.0, FIXED, FIXED, arrival="gamma", cv=3.0,
                                  token_ids=False))
    gaps = np.diff([0] + [r["arrival_time_ns"] for r in reqs]) / 1e9
    assert gaps.mean() == pytest.approx(0.1, rel=0.15)
    assert gaps.std() / gaps.mean() == pytest.approx(3.0, rel=0.2)


def test_fixed_and_uniform_lengths_and_the_total_cap():
    fixed = list(generate_requests(20, 1.0, LengthDist("fixed", 128), LengthDist("fixed", 64)))
    assert {(r["input_toks"], r["output_toks"]) for r in fixed} == {(128, 64)}
    uni = list(generate_requests(500, 1.0, parse_dist("uniform:10:20", False),
                                 parse_dist("uniform:1:5", True), token_ids=False))
    assert {r["input_toks"] for r in uni} == set(range(10, 21))
    assert {r["output_toks"] for r in uni} == set(range(1, 6))
    capped = list(generate_requests(2000, 1.0, parse_dist("sharegpt", False),
                                    parse_dist("sharegpt", True), max_total=512,
                                    token_ids=False))
    assert max(r["input_toks"] + r["output_toks"] for r in capped) <= 512
    assert min(r["output_toks"] for r in capped) >= 1


def test_sharegpt_lengths_look_like_sharegpt():
    reqs = list(generate_requests(20000, 1.0, parse_dist("sharegpt", False),
                                  parse_dist("sharegpt", True), token_ids=False))
    prompts = np.array([r["input_toks"] for r in reqs])
    answers = np.array([r["output_toks"] for r in reqs])
    assert 35 < np.median(prompts) < 75 and np.mean(prompts) > 2 * np.median(prompts)
    assert 150 < np.median(answers) < 260


def test_token_ids_match_the_lengths():
    for r in generate_requests(10, 1.0, parse_dist("uniform:1:50", False), FIXED,
                               vocab_size=1000):
        assert len(r["input_tok_ids"]) == r["input_toks"]
        assert len(r["output_tok_ids"]) == r["output_toks"]
        assert all(0 <= t < 1000 for t in r["input_tok_ids"])


def test_bad_distribution_is_rejected():
    with pytest.raises(argparse.ArgumentTypeError):
        parse_dist("normal:5", False)
    with pytest.raises(SystemExit):
        main(["--out", "x.jsonl", "--num-req", "0", "--rate", "1"])


@pytest.mark.parametrize("name,count", [("example_sharegpt_req100_rate10.jsonl", 100),
                                        ("example_fixed_in128_out128_req32_rate4.jsonl", 32),
                                        ("example_trace.jsonl", 10)])
def test_shipped_traces_parse(name, count):
    lines = (REPO / "dataset" / name).read_text().splitlines()
    assert len(lines) == count
    records = [json.loads(line) for line in lines]
    assert all({"input_toks", "output_toks", "arrival_time_ns"} <= r.keys() for r in records)
    times = [r["arrival_time_ns"] for r in records]
    assert times == sorted(times)


@pytest.mark.parametrize("name,numbers", [
    ("meta-llama/Llama-3.1-8B", (4096, 14336, 32, 32, 8, 128256, 131072, 0, 1)),
    ("meta-llama/Llama-3.1-70B", (8192, 28672, 80, 64, 8, 128256, 131072, 0, 1)),
    ("mistralai/Mixtral-8x7B-v0.1", (4096, 14336, 32, 32, 8, 32000, 32768, 8, 2)),
    ("microsoft/Phi-mini-MoE-instruct", (4096, 960, 32, 32, 8, 32064, 4096, 16, 2)),
])
def test_shipped_model_configs(name, numbers):
    m = load_model_config(name, Path(REPO / "model_config"))
    assert (m.hidden_size, m.intermediate_size, m.num_layers, m.num_heads, m.num_kv_heads,
            m.vocab_size, m.max_position_embeddings, m.num_experts,
            m.experts_per_token) == numbers
