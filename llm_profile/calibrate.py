"""Fit roofline efficiency tables to measured profiles; report leave-one-model-out errors.

For every operator class the achieved fraction of the pure roofline time,
r = max(FLOPs / peak, bytes / bandwidth) / measured, is tabulated against log2(tokens) (and,
for matrix multiplies, also against log2 of the weight-matrix size); medians per cell. The
tables are written to `llm_profile/calibration/<hardware>.json`, plus `generic.json` pooled
over all profiled GPUs for hardware nobody has profiled.

    python -m llm_profile.calibrate --perf-models ../shared/data/perf_models [--report]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference_serving.errors import InputError
from inference_serving.model_config import ModelConfig, load_model_config
from inference_serving.paths import MODEL_CONFIG_DIR
from llm_profile.hardware_catalog import load_hardware

CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration"
CLASSES = {
    "gemm": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
             "lm_head", "gate", "expert.w1", "expert.w2", "expert.w3"),
    "norm": ("input_layernorm", "post_layernorm", "final_layernorm"),
    "rope": ("rope",),
    "act": ("act_fn",),
    "embedding": ("embedding",),
}
OP_CLASS = {op: cls for cls, ops in CLASSES.items() for op in ops}
TOKEN_GRID = list(range(12))  # log2 tokens: 1 … 2048


@dataclass(frozen=True, slots=True)
class Sample:
    """One measured operator latency and its pure roofline time."""

    model: str
    tp: int
    op: str
    tokens: int
    weight_log2: int
    ideal_ns: float
    measured_ns: int
    nbytes: float
    family: str = ""


def gemm_shape(model: ModelConfig, op: str, tp: int) -> tuple[int, int]:
    """(K, N) of a matrix multiply on one TP rank (expert rows are whole experts)."""
    h, kvd, ffn, qd = model.hidden_size, model.kv_dim, model.intermediate_size, model.q_dim
    return {"q_proj": (h, qd // tp), "k_proj": (h, kvd // tp), "v_proj": (h, kvd // tp),
            "o_proj": (qd // tp, h), "gate_proj": (h, ffn // tp), "up_proj": (h, ffn // tp),
            "down_proj": (ffn // tp, h), "lm_head": (h, model.vocab_size // tp),
            "gate": (h, max(model.num_experts, 1)), "expert.w1": (h, ffn),
            "expert.w3": (h, ffn), "expert.w2": (ffn, h)}[op]


def work(model: ModelConfig, op: str, tokens: int, tp: int, fp: int) -> tuple[float, float]:
    """(FLOPs, bytes) of one operator call on one TP rank."""
    t, h = tokens, model.hidden_size
    cls = OP_CLASS[op]
    if cls == "gemm":
        k, n = gemm_shape(model, op, tp)
        return 2.0 * t * k * n, float((k * n + t * k + t * n) * fp)
    if cls == "norm":
        return 0.0, float((2 * t * h + h) * fp)
    if cls == "rope":
        return 0.0, float(2 * t * (model.q_dim + model.kv_dim) // tp * fp)
    if cls == "act":
        return 0.0, float(3 * t * model.intermediate_size // tp * fp)
    return 0.0, float(2 * t * h * fp)


def weight_log2(model: ModelConfig, op: str, tp: int) -> int:
    """Size class of an operator's weight matrix (0 for operators without one)."""
    if OP_CLASS[op] != "gemm":
        return 0
    k, n = gemm_shape(model, op, tp)
    return round(math.log2(k * n))


def load_samples(root: Path, hardware: str, fp_bits: int = 16) -> list[Sample]:
    """Every usable layers.csv row of one hardware folder."""
    hw = load_hardware(hardware)
    flops_per_ns, bytes_per_ns = hw.peak_flops_per_ns(fp_bits), hw.mem_bytes_per_ns
    samples = []
    for path in sorted((root / hardware).glob("*/*/tp*/layers.csv")):
        name = f"{path.parts[-4]}/{path.parts[-3]}"
        tp = int(path.parts[-2][2:])
        try:
            model = load_model_config(name, MODEL_CONFIG_DIR)
        except InputError:
            continue
        with path.open() as handle:
            for row in csv.DictReader(handle):
                op = row["layer_name"]
                if op not in OP_CLASS or int(row["tp_size"]) != tp:
                    continue
                tokens = int(row["input"])
                flops, nbytes = work(model, op, tokens, tp, fp_bits // 8)
                ideal = max(flops / flops_per_ns, nbytes / bytes_per_ns)
                samples.append(Sample(name, tp, op, tokens, weight_log2(model, op, tp), ideal,
                                      int(row["latency(ns)"]), nbytes, model.model_type))
    return samples


def fit(samples: list[Sample]) -> dict:
    """Median roofline fraction per (class, log2 tokens) and per (weight size, log2 tokens)."""
    by_class: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    by_gemm: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for s in samples:
        grid = round(math.log2(s.tokens))
        ratio = s.ideal_ns / s.measured_ns
        by_class[OP_CLASS[s.op]][grid].append(ratio)
        if OP_CLASS[s.op] == "gemm":
            by_gemm[s.weight_log2][grid].append(ratio)

    def table(cells: dict[int, list[float]]) -> list[float] | None:
        known = {g: float(np.median(v)) for g, v in cells.items()}
        if len(known) < 2:
            return None
        xs = sorted(known)
        return [round(float(np.interp(g, xs, [known[x] for x in xs])), 6) for g in TOKEN_GRID]

    classes = {cls: table(cells) for cls, cells in sorted(by_class.items())}
    gemm = {str(w): table(cells) for w, cells in sorted(by_gemm.items())}
    # Memory-bound element-wise operators: a fixed launch cost plus bytes at an effective
    # bandwidth, fitted by least squares on relative error (fits across models far better
    # than a roofline fraction, which is ill-defined when the fixed cost dominates).
    def lines(picked_samples: list[Sample]) -> dict[str, list[float]]:
        out = {}
        for cls in ("norm", "rope", "act", "embedding"):
            picked = [s for s in picked_samples if OP_CLASS[s.op] == cls]
            if len(picked) >= 2:
                x = np.array([s.nbytes for s in picked])
                y = np.array([s.measured_ns for s in picked], dtype=float)
                slope, fixed = np.polyfit(x, y, 1, w=1 / y)
                # Six significant digits keep the committed tables stable across BLAS builds.
                out[cls] = [float(f"{max(fixed, 0.0):.6g}"), float(f"{max(slope, 0.0):.6g}")]
        return out

    # Element-wise kernels differ by model family (RMSNorm in Llama is several unfused
    # kernels, PhiMoE's LayerNorm one fused kernel): lines per family, pooled as a fallback.
    families = sorted({s.family for s in samples if s.family})
    return {"token_log2_grid": TOKEN_GRID,
            "classes": {k: v for k, v in classes.items() if v},
            "gemm_by_weight_log2": {k: v for k, v in gemm.items() if v},
            "linear_ns": lines(samples),
            "linear_ns_by_family": {f: lines([s for s in samples if s.family == f])
                                    for f in families}}


def predict_ns(calibration: dict, op: str, tokens: int, weight: int, ideal_ns: float,
               nbytes: float, family: str = "") -> float:
    """Calibrated latency of one operator call (element-wise lines of the model's family when
    that family was profiled on this hardware)."""
    line = calibration.get("linear_ns_by_family", {}).get(family, {}).get(OP_CLASS[op]) \
        or calibration.get("linear_ns", {}).get(OP_CLASS[op])
    if line is not None:
        return line[0] + line[1] * nbytes
    return ideal_ns / ratio(calibration, op, tokens, weight)


def ratio(calibration: dict, op: str, tokens: int, weight: int) -> float:
    """Achieved roofline fraction for an operator call, interpolated in log2(tokens)."""
    grid = calibration["token_log2_grid"]
    x = math.log2(max(tokens, 1))
    row = calibration["gemm_by_weight_log2"].get(str(weight)) if OP_CLASS[op] == "gemm" else None
    if row is None:
        row = calibration["classes"][OP_CLASS[op]]
    return max(float(np.interp(x, grid, row)), 1e-6)


def leave_one_model_out(samples: list[Sample]) -> list[tuple[str, str, float, float]]:
    """(held-out model, op class, median per-layer error, median block-sum error) rows."""
    rows = []
    for held in sorted({s.model for s in samples}):
        train = [s for s in samples if s.model != held]
        test = [s for s in samples if s.model == held]
        if not train:
            continue
        cal = fit(train)
        predicted = [predict_ns(cal, s.op, s.tokens, s.weight_log2, s.ideal_ns, s.nbytes,
                                s.family) for s in test]
        errors = [abs(p / s.measured_ns - 1) for p, s in zip(predicted, test, strict=True)]
        for cls in CLASSES:
            picked = [e for e, s in zip(errors, test, strict=True) if OP_CLASS[s.op] == cls]
            if picked:
                rows.append((held, cls, float(np.median(picked)), float("nan")))
        sums: dict[tuple[int, int], list[float]] = defaultdict(lambda: [0.0, 0.0])
        for p, s in zip(predicted, test, strict=True):
            sums[(s.tp, s.tokens)][0] += p
            sums[(s.tp, s.tokens)][1] += s.measured_ns
        block = float(np.median([abs(a / b - 1) for a, b in sums.values()]))
        rows.append((held, "all", float(np.median(errors)), block))
    return rows


def load_calibration(hardware: str) -> dict | None:
    """The fitted table of `hardware`, else the pooled generic one, else None."""
    for name in (hardware, "generic"):
        path = CALIBRATION_DIR / f"{name}.json"
        if path.is_file():
            return json.loads(path.read_text())
    return None


def main(argv: list[str] | None = None) -> int:
    """Fit and write the tables; with --report print the leave-one-model-out errors."""
    p = argparse.ArgumentParser(prog="python -m llm_profile.calibrate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--perf-models", required=True, type=Path)
    p.add_argument("--out", type=Path, default=CALIBRATION_DIR)
    p.add_argument("--report", action="store_true")
    args = p.parse_args(argv)
    pooled = []
    args.out.mkdir(parents=True, exist_ok=True)
    for folder in sorted(d for d in args.perf_models.iterdir() if d.is_dir()):
        if folder.name.lower().startswith("tpu"):
            continue  # fused TPU kernels do not map onto the GPU operator classes
        samples = load_samples(args.perf_models, folder.name)
        if not samples:
            continue
        pooled += samples
        cal = fit(samples)
        (args.out / f"{folder.name}.json").write_text(json.dumps(cal, indent=1) + "\n")
        if args.report:
            print(f"{folder.name}: leave-one-model-out median |error|")
            for held, cls, layer, block in leave_one_model_out(samples):
                extra = "" if math.isnan(block) else f"   block sum {block:6.3f}"
                print(f"  {held:35} {cls:10} per layer {layer:6.3f}{extra}")
    (args.out / "generic.json").write_text(json.dumps(fit(pooled), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
