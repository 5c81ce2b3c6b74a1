"""Attention predictor: held-out error, seeded determinism, grids and live use."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from tests.conftest import DATA, needs_data

needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None,
                                   reason="scikit-learn is not installed "
                                   "(pip install -e '.[profile]')")
A6000 = DATA / "perf_models/A6000/meta-llama/Llama-3.1-8B/tp1"


@needs_data
@needs_sklearn
def test_grids_are_reproducible_and_held_out_error_is_small(tmp_path):
    from llm_profile.attention_predictor import main

    for run in ("a", "b"):
        assert main(["--profile", str(A6000), "--out", str(tmp_path / run), "--max-len", "512",
                     "--seed", "7"]) == 0
    for name in ("attn_prefill_predictions.csv", "attn_decode_predictions.csv"):
        first = (tmp_path / "a/predictions" / name).read_bytes()
        assert first == (tmp_path / "b/predictions" / name).read_bytes()
    from llm_profile.attention_predictor import AttentionPredictor
    from llm_profile.profile_tables import read_raw_attention

    predictor = AttentionPredictor.train(read_raw_attention(A6000 / "attention.csv"), seed=7)
    prefill_error, decode_error = predictor.held_out_error
    assert prefill_error < 0.10 and decode_error < 0.10


@needs_data
@needs_sklearn
def test_written_grids_feed_the_simulator_and_match_live_prediction(tmp_path):
    from llm_profile.attention_predictor import AttentionPredictor, main
    from llm_profile.perf_model import AttentionBatch
    from llm_profile.profile_tables import read_raw_attention
    from llm_profile.profiled import ProfiledPerfModel

    profile = tmp_path / "tp1"
    profile.mkdir()
    (profile / "layers.csv").write_bytes((A6000 / "layers.csv").read_bytes())
    (profile / "attention.csv").write_bytes((A6000 / "attention.csv").read_bytes())
    assert main(["--profile", str(profile), "--max-len", "1024"]) == 0
    grid = ProfiledPerfModel(profile, 1, False, lambda m: None)
    live = ProfiledPerfModel(profile, 1, False, lambda m: None, live_prediction=True)
    batch = AttentionBatch((), (), (500, 510, 530))  # key: 3 decodes, context 576
    assert abs(grid.attention_ns(batch) - live.attention_ns(batch)) <= 1
    expected = AttentionPredictor.train(read_raw_attention(profile / "attention.csv"))
    assert live.attention_ns(batch) == int(expected.decode_ns(np.array([3]),
                                                              np.array([576]))[0])
