"""Pick the PerfModel for an instance: profiled tables when present, else the roofline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from llm_profile.calibrate import load_calibration
from llm_profile.hardware_catalog import known_hardware, load_hardware
from llm_profile.perf_model import PerfModel
from llm_profile.profiled import ProfiledPerfModel
from llm_profile.roofline import RooflinePerfModel
from llmsim_core.errors import InputError
from llmsim_core.model_config import ModelConfig


def is_tpu(hardware: str) -> bool:
    """TPU profiles switch on the TPU lookup quirks (serving.md §6.3)."""
    return hardware.lower().startswith("tpu")


def make_perf_model(root: Path, hardware: str, model: ModelConfig, tp: int, fp_bits: int,
                    warn: Callable[[str], None], live_prediction: bool = False) -> PerfModel:
    """Profiled tables from `<root>/<hardware>/<model>/tp<tp>/`, else a roofline model."""
    model_dir = root / hardware / model.name
    directory = model_dir / f"tp{tp}"
    try:
        spec = load_hardware(hardware)
    except InputError:
        roofline = None
    else:
        roofline = RooflinePerfModel(model, spec, tp, fp_bits, load_calibration(spec.name))
    if directory.is_dir():
        return ProfiledPerfModel(directory, tp, is_tpu(hardware), warn, roofline,
                                 live_prediction)
    if model_dir.is_dir():
        have = sorted(p.name for p in model_dir.iterdir() if p.name.startswith("tp"))
        raise InputError(f"no profile for TP degree {tp}", f"{directory} is missing (have: "
                         f"{', '.join(have) or 'none'})", "profile that TP degree, change npu_num, "
                         "or remove the folder to use the roofline model")
    if roofline is None:
        raise InputError(f"unknown hardware '{hardware}'", f"no profile under {root / hardware} "
                         "and not in the hardware catalogue",
                         f"use one of {', '.join(known_hardware())} or pass --perf-models")
    return roofline
