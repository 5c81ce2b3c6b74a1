"""Calibrated roofline: committed tables reproduce from the profiles; leave-one-model-out error."""

from __future__ import annotations

import json

import pytest

from llm_profile.calibrate import CALIBRATION_DIR, fit, leave_one_model_out, load_samples
from llm_profile.factory import make_perf_model
from llm_profile.hardware_catalog import load_hardware
from llm_profile.roofline import RooflinePerfModel
from tests.conftest import DATA, needs_data
from tests.test_memory_model import LLAMA8B


@needs_data
@pytest.mark.parametrize("hardware", ["A6000", "H100", "RTX3090"])
def test_committed_tables_are_what_the_fit_produces(hardware):
    committed = json.loads((CALIBRATION_DIR / f"{hardware}.json").read_text())
    fitted = json.loads(json.dumps(fit(load_samples(DATA / "perf_models", hardware))))
    assert fitted == committed


@needs_data
@pytest.mark.parametrize("hardware,held_out", [
    ("H100", "meta-llama/Llama-3.1-70B"), ("H100", "meta-llama/Llama-3.1-8B"),
    ("H100", "mistralai/Mixtral-8x7B-v0.1"), ("A6000", "meta-llama/Llama-3.1-8B")])
def test_leave_one_model_out_error(hardware, held_out):
    rows = leave_one_model_out(load_samples(DATA / "perf_models", hardware))
    layer, block = next((layer, block) for held, cls, layer, block in rows
                        if held == held_out and cls == "all")
    assert layer <= 0.15 and block <= 0.10


def test_uncalibrated_hardware_uses_the_generic_table(tmp_path):
    perf = make_perf_model(tmp_path, "B200", LLAMA8B, 1, 16, lambda msg: None)
    assert isinstance(perf, RooflinePerfModel) and perf.calibration is not None
    plain = RooflinePerfModel(LLAMA8B, load_hardware("B200"), 1)
    # Both models stay in the same order of magnitude for a large GEMM.
    assert 0.3 < perf.layer_ns("gate_proj", 2048) / plain.layer_ns("gate_proj", 2048) < 3
