"""Trace generator: determinism, arrival process, length distributions; shipped traces and
model configs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from dataset.generate import generate_requests, main, parse_dist
from llmsim_core.model_config import load_model_config
from tests.conftest import REPO


def _lengths(reqs: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([r["input_toks"] for r in reqs]), np.array([r["output_toks"] for r in reqs]))


def test_same_seed_same_bytes_and_different_seed_differs(tmp_path):
    args = ["--num-req", "50", "--rate", "5"]
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        assert main(["--out", str(tmp_path / f"{name}.jsonl"), *args, "--seed", seed]) == 0
    a, b, c = ((tmp_path / f"{n}.jsonl").read_bytes() for n in "abc")
    assert a == b and a != c
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_token_ids_do_not_change_lengths_or_arrivals():
    with_ids = generate_requests(30, 5.0, "sharegpt", "sharegpt", seed=7)
    without = generate_requests(30, 5.0, "sharegpt", "sharegpt", seed=7, token_ids=False)
    keys = ("input_toks", "output_toks", "arrival_time_ns")
    assert [[r[k] for k in keys] for r in with_ids] == [[r[k] for k in keys] for r in without]


def test_poisson_arrivals_are_non_decreasing_at_the_requested_rate():
    reqs = list(generate_requests(5000, 20.0, "fixed:100", "fixed:100", token_ids=False))
    times = np.array([r["arrival_time_ns"] for r in reqs])
    assert times.dtype.kind == "i" and (np.diff(times) >= 0).all()
    assert times[0] > 0  # the first request arrives one gap after t = 0
    assert 5000 / (times[-1] / 1e9) == pytest.approx(20.0, rel=0.05)
    gaps = np.diff(times, prepend=0) / 1e9
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.1)  # exponential gaps


def test_gamma_arrivals_follow_the_coefficient_of_variation():
    for cv in (0.5, 3.0):
        reqs = list(generate_requests(5000, 10.0, "fixed:100", "fixed:100", arrival="gamma",
                                      cv=cv, token_ids=False))
        gaps = np.diff([0] + [r["arrival_time_ns"] for r in reqs]) / 1e9
        assert gaps.mean() == pytest.approx(0.1, rel=0.15)
        assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.2)


def test_fixed_and_uniform_lengths():
    fixed = list(generate_requests(20, 1.0, "fixed:128", "fixed:64"))
    assert {(r["input_toks"], r["output_toks"]) for r in fixed} == {(128, 64)}
    prompts, answers = _lengths(list(generate_requests(
        2000, 1.0, "uniform:10:20", "uniform:1:5", token_ids=False)))
    assert set(prompts) == set(range(10, 21)) and set(answers) == set(range(1, 6))
    assert np.bincount(prompts)[10:].min() > 2000 / 11 * 0.7  # roughly flat


@pytest.mark.parametrize("dists", [("sharegpt", "sharegpt"), ("uniform:100:600", "sharegpt"),
                                   ("sharegpt", "uniform:200:400")])
def test_prompt_plus_answer_never_exceeds_max_total(dists):
    prompts, answers = _lengths(list(generate_requests(3000, 1.0, *dists, max_total=512,
                                                       token_ids=False)))
    assert (prompts + answers).max() <= 512
    assert prompts.min() >= 1 and answers.min() >= 1
    if dists[1].startswith("uniform"):
        assert answers.min() >= 200  # the answer's lower bound is kept; the prompt gives way


def test_sharegpt_lengths_match_the_fitted_sample():
    # Statistics of the 300-request Llama ShareGPT trace the laws were fitted to: prompts
    # median 34.5 / mean 224, answers median 267.5 / mean 278.
    prompts, answers = _lengths(list(generate_requests(20000, 1.0, "sharegpt", "sharegpt",
                                                       token_ids=False)))
    assert 28 < np.median(prompts) < 42 and 200 < prompts.mean() < 250
    assert 210 < np.median(answers) < 290 and 250 < answers.mean() < 300
    assert (prompts + answers).max() <= 2048


def test_token_ids_match_the_lengths_and_vocabulary():
    for r in generate_requests(10, 1.0, "uniform:1:50", "sharegpt", vocab_size=1000):
        assert len(r["input_tok_ids"]) == r["input_toks"]
        assert len(r["output_tok_ids"]) == r["output_toks"]
        assert all(0 <= t < 1000 for t in r["input_tok_ids"] + r["output_tok_ids"])


@pytest.mark.parametrize("spec", ["normal:5", "fixed:0", "fixed:x", "uniform:5:3", "uniform:4",
                                  "sharegpt:1"])
def test_bad_distribution_is_rejected(spec):
    with pytest.raises(ValueError):
        parse_dist(spec, output=False)


@pytest.mark.parametrize("extra", [["--num-req", "0"], ["--rate", "0"], ["--rate", "inf"],
                                   ["--cv", "2"], ["--arrival", "gamma", "--cv", "-1"],
                                   ["--input-dist", "fixed:2000", "--output-dist", "fixed:49"],
                                   ["--seed", "-1"], ["--vocab-size", "0"], ["--max-total", "1"],
                                   ["--output-dist", "uniform:9"]])
def test_bad_arguments_are_argparse_errors(tmp_path, capsys, extra):
    out = tmp_path / "t.jsonl"
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(out), "--num-req", "5", "--rate", "1", "--max-total", "2048",
              *extra])
    assert exc.value.code == 2 and "error:" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("name,count,ids", [("example_sharegpt_req100_rate10.jsonl", 100, True),
                                            ("example_fixed_in128_out128_req32_rate4.jsonl", 32,
                                             True),
                                            ("example_trace.jsonl", 10, True)])
def test_shipped_traces_parse(name, count, ids):
    path = REPO / "dataset" / name
    assert path.stat().st_size < 1_000_000
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == count
    for r in records:
        assert isinstance(r["input_toks"], int) and r["input_toks"] >= 1
        assert isinstance(r["output_toks"], int) and r["output_toks"] >= 1
        assert isinstance(r["arrival_time_ns"], int)
        assert r["input_toks"] + r["output_toks"] <= 2048
        if ids:
            assert len(r["input_tok_ids"]) == r["input_toks"]
            assert len(r["output_tok_ids"]) == r["output_toks"]
    times = [r["arrival_time_ns"] for r in records]
    assert times == sorted(times) and times[0] > 0
    if "fixed_in128_out128" in name:
        assert {(r["input_toks"], r["output_toks"]) for r in records} == {(128, 128)}


def test_shipped_traces_are_what_the_readme_commands_write(tmp_path):
    # dataset/README.md records the command of each shipped trace; rerun them and compare bytes.
    readme = (REPO / "dataset" / "README.md").read_text()
    commands = re.findall(r"`(python -m dataset\.generate --out dataset/example[^`]*)`", readme)
    assert len(commands) == 3
    for command in commands:
        argv = command.split()[3:]
        shipped = REPO / argv[1]
        argv[1] = str(tmp_path / shipped.name)
        main(argv)
        assert (tmp_path / shipped.name).read_bytes() == shipped.read_bytes(), command


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
    assert m.head_dim == 128 and m.is_moe == (numbers[7] > 0)
