"""Pick the PerfModel for an instance: profiled tables when present, else the roofline.

`PERF_MODELS` holds the built-in models by `--perf-model` name; the default `auto` takes the
profiled tables when `<root>/<hardware>/<model>/` exists, else the roofline model. `CUSTOM`
loads a user class (`--custom-perf-model pkg.mod:Class`, see `llm_profile/custom_perf.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from llm_profile.calibrate import load_calibration
from llm_profile.custom_perf import load_custom_perf_model
from llm_profile.hardware_catalog import known_hardware, load_hardware
from llm_profile.head_profiled import HeadPerfModel, is_head_layout, pick_variant
from llm_profile.perf_model import PerfModel
from llm_profile.profiled import ProfiledPerfModel
from llm_profile.roofline import RooflinePerfModel
from llmsim_core.errors import InputError
from llmsim_core.model_config import ModelConfig

PerfModelFactory = Callable[[Path, str, ModelConfig, int, int, Callable[[str], None], bool],
                            PerfModel]


def is_tpu(hardware: str) -> bool:
    """TPU profiles switch on the TPU lookup quirks (serving.md §6.3)."""
    return hardware.lower().startswith("tpu")


def _catalogued_roofline(hardware: str, model: ModelConfig, tp: int,
                         fp_bits: int) -> RooflinePerfModel | None:
    try:
        spec = load_hardware(hardware)
    except InputError:
        return None
    return RooflinePerfModel(model, spec, tp, fp_bits, load_calibration(spec.name))


def profiled(root: Path, hardware: str, model: ModelConfig, tp: int, fp_bits: int,
             warn: Callable[[str], None], live_prediction: bool) -> PerfModel:
    """Tables from `<root>/<hardware>/<model>/tp<tp>/` (or, in the current layout,
    `<root>/<hardware>/<model>/<variant>/tp<tp>/`, detected per model folder); operators they
    lack fall back to the roofline model when the hardware is catalogued."""
    roofline = _catalogued_roofline(hardware, model, tp, fp_bits)
    model_dir = root / hardware / model.name
    directory = model_dir / f"tp{tp}"
    if directory.is_dir():
        return ProfiledPerfModel(directory, tp, is_tpu(hardware), warn, roofline,
                                 live_prediction)
    if is_head_layout(model_dir):
        if live_prediction:
            raise InputError("--enable-attn-prediction needs the legacy attention.csv",
                             f"{model_dir} holds a current-layout profile (meta.yaml)",
                             "drop the flag: the current layout's attention grid is used as is")
        return HeadPerfModel(pick_variant(model_dir, fp_bits), tp, warn, roofline)
    if model_dir.is_dir():
        have = sorted(p.name for p in model_dir.iterdir() if p.name.startswith("tp"))
        raise InputError(f"no profile for TP degree {tp}", f"{directory} is missing (have: "
                         f"{', '.join(have) or 'none'})", "profile that TP degree, change npu_num, "
                         "or remove the folder to use the roofline model")
    raise InputError(f"no profile of {model.name} on {hardware}", f"{model_dir} is missing",
                     "pass --perf-models DIR holding it, or use --perf-model auto or roofline")


def roofline(root: Path, hardware: str, model: ModelConfig, tp: int, fp_bits: int,
             warn: Callable[[str], None], live_prediction: bool) -> PerfModel:
    """The calibrated roofline model of a catalogued accelerator."""
    model_roofline = _catalogued_roofline(hardware, model, tp, fp_bits)
    if model_roofline is None:
        raise InputError(f"unknown hardware '{hardware}'", f"no profile under {root / hardware} "
                         "and not in the hardware catalogue",
                         f"use one of {', '.join(known_hardware())} or pass --perf-models")
    return model_roofline


PERF_MODELS: dict[str, PerfModelFactory] = {"profiled": profiled, "roofline": roofline}


def make_perf_model(root: Path, hardware: str, model: ModelConfig, tp: int, fp_bits: int,
                    warn: Callable[[str], None], live_prediction: bool = False,
                    policy: str = "auto", custom: str | None = None) -> PerfModel:
    """The perf model `policy` names (`auto`: profiled tables from
    `<root>/<hardware>/<model>/tp<tp>/` when the model's folder exists, else the roofline)."""
    if policy == "CUSTOM":
        if not custom:
            raise InputError("a CUSTOM perf model needs a class", "--perf-model",
                             "pass --custom-perf-model package.module:Class")
        return load_custom_perf_model(custom, hardware, model, tp, fp_bits)
    if policy == "auto":
        policy = "profiled" if (root / hardware / model.name).is_dir() else "roofline"
        if policy == "roofline" and live_prediction:
            raise InputError("--enable-attn-prediction has no effect: the roofline model prices "
                             f"{model.name} on {hardware}", f"no profile under "
                             f"{root / hardware / model.name}",
                             "drop the flag or pass --perf-models DIR holding that profile")
    factory = PERF_MODELS.get(policy)
    if factory is None:
        raise InputError(f"unknown perf model '{policy}'", "--perf-model",
                         f"use one of {', '.join(['auto', *PERF_MODELS, 'CUSTOM'])}")
    return factory(root, hardware, model, tp, fp_bits, warn, live_prediction)
