"""Fit roofline efficiency tables to measured profiles; report leave-one-model-out errors.

Matrix multiplies: the achieved fraction of the pure roofline time,
r = max(FLOPs / peak, bytes / bandwidth) / measured, tabulated against log2(tokens) and log2
of the weight-matrix size (medians per cell). Element-wise operators and the MoE router: a
cost per kernel launch plus the roofline memory time over an efficiency, with launches and
bytes from `op_recipes`. The tables are written to `llm_profile/calibration/<hardware>.json`,
plus `generic.json` pooled over all profiled GPUs for hardware nobody has profiled (and for
operator classes a hardware's profiles lack).

    python -m llm_profile.calibrate --perf-models ../shared/data/perf_models [--report]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llm_profile.hardware_catalog import is_known, load_hardware
from llm_profile.op_recipes import elements, recipe
from llm_profile.profile_tables import read_layers
from llmsim_core.args import OneLineParser, path_arg, print_flag_warnings
from llmsim_core.atomic_write import write_all_atomic
from llmsim_core.cli_guard import guarded
from llmsim_core.errors import InputError
from llmsim_core.iteration_plan import (
    COMPUTE,
    LayerGroup,
    block_ops,
    edge_group,
    rank_expert_calls,
)
from llmsim_core.model_config import ModelConfig, load_model_config
from llmsim_core.op_templates import ATTENTION, EXPERT_ROWS, dense_template, moe_template
from llmsim_core.paths import MODEL_CONFIG_DIR
from llmsim_core.strict_json import load_file

CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration"
CLASSES = {
    "gemm": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
             "lm_head", "expert.w1", "expert.w2", "expert.w3"),
    "router": ("gate",),
    "norm": ("input_layernorm", "post_layernorm", "final_layernorm", "qk_norm"),
    "rope": ("rope",),
    "act": ("act_fn",),
    "embedding": ("embedding",),
}
OP_CLASS = {op: cls for cls, ops in CLASSES.items() for op in ops}
ELEMENTWISE = ("router", "norm", "rope", "act", "embedding")
TOKEN_GRID = list(range(12))  # log2 tokens: 1 … 2048


@dataclass(frozen=True, slots=True)
class OpWork:
    """FLOPs, bytes and kernel launches of one operator call on one TP rank."""

    flops: float
    nbytes: float
    launches: int


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
    launches: int
    config: ModelConfig

    @property
    def family(self) -> str:
        """The model's `model_type` (selects per-family element-wise lines)."""
        return self.config.model_type


def gemm_shape(model: ModelConfig, op: str, tp: int) -> tuple[int, int]:
    """(K, N) of a matrix multiply on one TP rank (expert rows are whole experts)."""
    h, kvd, ffn, qd = model.hidden_size, model.kv_dim, model.intermediate_size, model.q_dim
    return {"q_proj": (h, qd // tp), "k_proj": (h, kvd // tp), "v_proj": (h, kvd // tp),
            "o_proj": (qd // tp, h), "gate_proj": (h, ffn // tp), "up_proj": (h, ffn // tp),
            "down_proj": (ffn // tp, h), "lm_head": (h, model.vocab_size // tp),
            "gate": (h, max(model.num_experts, 1)), "expert.w1": (h, ffn),
            "expert.w3": (h, ffn), "expert.w2": (ffn, h)}[op]


def work(model: ModelConfig, op: str, tokens: int, tp: int, fp: int) -> OpWork:
    """FLOPs, bytes and launches of one operator call on one TP rank (see `op_recipes`)."""
    cls = OP_CLASS[op]
    if cls == "gemm":
        k, n = gemm_shape(model, op, tp)
        return OpWork(2.0 * tokens * k * n, float((k * n + tokens * k + tokens * n) * fp), 1)
    rec = recipe(model, op, fp)
    flops = 2.0 * tokens * model.hidden_size * max(model.num_experts, 1) \
        if cls == "router" else 0.0
    return OpWork(flops, elements(model, op, tokens, tp) * rec.bytes_per_element, rec.launches)


def weight_log2(model: ModelConfig, op: str, tp: int) -> int:
    """Size class of an operator's weight matrix (0 for operators without one)."""
    if OP_CLASS[op] != "gemm":
        return 0
    k, n = gemm_shape(model, op, tp)
    return round(math.log2(k * n))


def load_samples(root: Path, hardware: str, fp_bits: int = 16,
                 configs: Path = MODEL_CONFIG_DIR,
                 note: Callable[[str], None] = lambda msg: None) -> list[Sample]:
    """Every layers.csv row of one hardware folder (first of a duplicate key); `note` hears of
    models skipped for want of a config and of duplicates that disagree."""
    hw = load_hardware(hardware)
    flops_per_ns, bytes_per_ns = hw.peak_flops_per_ns(fp_bits), hw.mem_bytes_per_ns
    samples = []
    for path in sorted((root / hardware).glob("*/*/tp*/layers.csv")):
        name = f"{path.parts[-4]}/{path.parts[-3]}"
        degree = path.parts[-2][2:]
        if not (degree.isascii() and degree.isdigit() and int(degree) >= 1):
            note(f"skipped {path}: folder {path.parts[-2]} is not tp<N> with N >= 1")
            continue
        tp = int(degree)
        try:
            model = load_model_config(name, configs, note)
        except InputError as exc:
            note(f"skipped {path}: {exc.what}")
            continue
        for op, curve in read_layers(path, tp, note).items():
            if op not in OP_CLASS:
                continue
            for tokens, latency in zip(curve.tokens.tolist(), curve.latency.tolist(),
                                       strict=True):
                if latency <= 0:
                    raise InputError(f"{op} at {tokens} tokens measured {latency} ns; a kernel "
                                     "takes some time, so no ratio to the roofline exists",
                                     str(path), "fix or remove the row")
                w = work(model, op, tokens, tp, fp_bits // 8)
                ideal = max(w.flops / flops_per_ns, w.nbytes / bytes_per_ns)
                samples.append(Sample(name, tp, op, tokens, weight_log2(model, op, tp), ideal,
                                      int(latency), w.launches, model))
    return samples


def load_all_samples(root: Path, configs: Path = MODEL_CONFIG_DIR,
                     note: Callable[[str], None] = lambda msg: None) -> dict[str, list[Sample]]:
    """Samples of every profiled GPU under `root`, by hardware folder name; `note` hears of
    what cannot be calibrated."""
    if not root.is_dir():
        raise InputError("profile root not found", str(root),
                         "pass the folder holding <hardware>/<org>/<model>/tp<N>/")
    by_hardware = {}
    for folder in sorted(d for d in root.iterdir() if d.is_dir()):
        if folder.name.lower().startswith("tpu"):
            continue  # fused TPU kernels do not map onto the GPU operator classes
        if not is_known(folder.name):
            note(f"skipped {folder}: not in the hardware catalogue (no peak FLOP/s or "
                 "bandwidth to calibrate against)")
            continue
        samples = load_samples(root, folder.name, configs=configs, note=note)
        if samples:
            by_hardware[folder.name] = samples
    return by_hardware


def _line(picked: list[Sample]) -> list[float] | None:
    """[ns per launch, measured / ideal] minimising relative error, both non-negative."""
    if len(picked) < 2:
        return None
    y = np.array([s.measured_ns for s in picked], dtype=float)
    a = np.array([[s.launches, s.ideal_ns] for s in picked]) / y[:, None]
    coef = np.linalg.lstsq(a, np.ones(len(y)), rcond=None)[0]
    if coef.min() < 0:  # keep the better one-term fit
        keep = int(np.argmax(coef))
        coef = np.zeros(2)
        coef[keep] = a[:, keep].sum() / (a[:, keep] ** 2).sum()
    # Six significant digits keep the committed tables stable across BLAS builds.
    return [float(f"{c:.6g}") for c in coef]


def fit(samples: list[Sample], fallback: dict | None = None) -> dict:
    """Calibration table of one hardware; classes it never saw come from `fallback`.

    Matrix multiplies: median roofline fraction per log2(tokens), pooled and per log2 of the
    weight-matrix size. Element-wise operators (and the MoE router): a cost per kernel launch
    plus the roofline memory time over an effective efficiency, pooled over families through
    `op_recipes` and also per family (used when the model's family was profiled here).
    """
    pooled: dict[int, list[float]] = defaultdict(list)
    by_weight: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for s in samples:
        if OP_CLASS[s.op] == "gemm":
            grid, fraction = round(math.log2(s.tokens)), s.ideal_ns / s.measured_ns
            pooled[grid].append(fraction)
            by_weight[s.weight_log2][grid].append(fraction)

    def table(cells: dict[int, list[float]]) -> list[float] | None:
        known = {g: float(np.median(v)) for g, v in cells.items()}
        if len(known) < 2:
            return None
        xs = sorted(known)
        return [round(float(np.interp(g, xs, [known[x] for x in xs])), 6) for g in TOKEN_GRID]

    def lines(picked: list[Sample]) -> dict[str, list[float]]:
        fitted = {cls: _line([s for s in picked if OP_CLASS[s.op] == cls])
                  for cls in ELEMENTWISE}
        return {cls: line for cls, line in fitted.items() if line is not None}

    fallback = fallback or {}
    gemm = table(pooled)
    weights = {str(w): t for w, cells in sorted(by_weight.items()) if (t := table(cells))}
    families = sorted({s.family for s in samples if s.family})
    return {"token_log2_grid": TOKEN_GRID,
            "classes": {"gemm": gemm} if gemm else fallback.get("classes", {}),
            "gemm_by_weight_log2": weights or fallback.get("gemm_by_weight_log2", {}),
            "elementwise": fallback.get("elementwise", {}) | lines(samples),
            "elementwise_by_family": {f: lines([s for s in samples if s.family == f])
                                      for f in families}}


def predict_ns(calibration: dict, op: str, tokens: int, weight: int, ideal_ns: float,
               launches: int, family: str = "", gemm_ratio: GemmRatio | None = None) -> float:
    """Calibrated latency of one operator call (element-wise lines of the model's family when
    that family was profiled on this hardware); `gemm_ratio`, the table's prepared `GemmRatio`,
    saves rebuilding it on every call."""
    cls = OP_CLASS[op]
    if cls in ELEMENTWISE:
        line = calibration["elementwise_by_family"].get(family, {}).get(cls) \
            or calibration["elementwise"][cls]
        return line[0] * launches + line[1] * ideal_ns
    return ideal_ns / (gemm_ratio or GemmRatio(calibration))(tokens, weight)


class GemmRatio:
    """Achieved roofline fraction of a matrix multiply under one calibration table,
    interpolated in log2(tokens) and between the nearest profiled weight sizes; the row
    values at a token count are interpolated once and kept for every weight size."""

    def __init__(self, calibration: dict) -> None:
        self.grid = np.asarray(calibration["token_log2_grid"], dtype=np.float64)
        rows = {int(w): row for w, row in calibration["gemm_by_weight_log2"].items()}
        self.sizes = np.asarray(sorted(rows), dtype=np.float64)
        self.rows = [np.asarray(rows[w], dtype=np.float64) for w in sorted(rows)]
        self.pooled = None if rows else \
            np.asarray(calibration["classes"]["gemm"], dtype=np.float64)
        self._at: dict[int, np.ndarray] = {}

    def __call__(self, tokens: int, weight: int) -> float:
        """The fraction for `tokens` tokens through a weight of 2^`weight` elements."""
        x = math.log2(max(tokens, 1))
        if self.pooled is not None:
            return max(float(np.interp(x, self.grid, self.pooled)), 1e-6)
        at = self._at.get(tokens)
        if at is None:
            at = self._at[tokens] = np.asarray([float(np.interp(x, self.grid, row))
                                                for row in self.rows])
        return max(float(np.interp(weight, self.sizes, at)), 1e-6)


def _unpriced(op: str, tokens: int) -> int:
    """Latency stand-in: the composition needs only the plan's structure."""
    return 0


def iteration_ops(model: ModelConfig, tp: int, tokens: int) -> list[tuple[str, int, int]]:
    """(operator, tokens, calls) of one iteration over `tokens` tokens on one rank, without
    attention, composed from the iteration plan's pieces (a decode batch: every token is a
    request's last): embedding, L blocks, experts under even routing, final norm and lm_head."""
    template = moe_template(False, tp, qk_norm=model.qk_norm) if model.is_moe \
        else dense_template(False, tp, model.qk_norm)
    groups = [edge_group(template.pre_ops, tokens, tokens, _unpriced),
              LayerGroup(0, model.num_layers, block_ops(template, tokens, _unpriced, 0, 0, 0)),
              edge_group(template.post_ops, tokens, tokens, _unpriced)]
    calls = [(op.name, op.tokens, group.count) for group in groups for op in group.ops
             if op.kind == COMPUTE and op.name not in (ATTENTION, "experts")]
    if model.is_moe:
        routed = max(1, round(tokens * model.experts_per_token / model.num_experts))
        busiest = rank_expert_calls([routed] * model.num_experts, tp)[0]
        calls += [(row, n, model.num_layers * experts) for n, experts in busiest.items()
                  for row in EXPERT_ROWS]
    return calls


def model_errors(cal: dict, test: list[Sample]) -> list[tuple[str, str, float, float]]:
    """(model, op class, median per-layer error, median iteration error) rows of one
    calibration predicting the samples of one model; class "all" carries the iteration error."""
    measured = {(s.tp, s.op, s.tokens): s.measured_ns for s in test}
    predicted = {(s.tp, s.op, s.tokens): predict_ns(cal, s.op, s.tokens, s.weight_log2,
                                                     s.ideal_ns, s.launches, s.family)
                 for s in test}
    name, model = test[0].model, test[0].config
    errors = {key: abs(predicted[key] / measured[key] - 1) for key in measured}
    rows = []
    for cls in CLASSES:
        picked = [e for key, e in errors.items() if OP_CLASS[key[1]] == cls]
        if picked:
            rows.append((name, cls, float(np.median(picked)), float("nan")))
    iteration = []
    for tp, tokens in sorted({(s.tp, s.tokens) for s in test}):
        keys = [((tp, op, t), n) for op, t, n in iteration_ops(model, tp, tokens)]
        if all(key in measured for key, _ in keys):
            guess = sum(predicted[key] * n for key, n in keys)
            truth = sum(measured[key] * n for key, n in keys)
            iteration.append(abs(guess / truth - 1))
    rows.append((name, "all", float(np.median(list(errors.values()))),
                 float(np.median(iteration)) if iteration else float("nan")))
    return rows


def leave_one_model_out(samples: list[Sample], pooled: list[Sample] | None = None
                        ) -> list[tuple[str, str, float, float]]:
    """`model_errors` rows of each model predicted by a fit without it.

    The held-out model is absent from the fit and from its fallback (`pooled`: samples of
    other hardware, for operator classes this hardware saw only in the held-out model)."""
    rows = []
    for held in sorted({s.model for s in samples}):
        train = [s for s in samples if s.model != held]
        if not train:
            continue
        others = [s for s in pooled or () if s.model != held]
        cal = fit(train, fit(others) if others else None)
        rows += model_errors(cal, [s for s in samples if s.model == held])
    return rows


def leave_one_hardware_out(by_hardware: dict[str, list[Sample]]
                           ) -> list[tuple[str, str, str, float, float]]:
    """(hardware, *model_errors row) of each GPU predicted by the pooled fit of the others:
    the error to expect on hardware nobody has profiled (the `generic.json` path)."""
    rows = []
    for hardware, samples in by_hardware.items():
        others = [s for name, rows_ in by_hardware.items() if name != hardware for s in rows_]
        if not others:
            continue
        cal = fit(others)
        for model in sorted({s.model for s in samples}):
            rows += [(hardware, *row) for row in
                     model_errors(cal, [s for s in samples if s.model == model])]
    return rows


CALIBRATION_KEYS = ("token_log2_grid", "classes", "gemm_by_weight_log2", "elementwise",
                    "elementwise_by_family")


def _leaves(node: object) -> list[object]:
    if isinstance(node, dict):
        return [leaf for value in node.values() for leaf in _leaves(value)]
    if isinstance(node, list):
        return [leaf for value in node for leaf in _leaves(value)]
    return [node]


def check_calibration(raw: object, path: Path) -> dict:
    """A calibration table with every key `fit` writes and only non-negative numbers (ns per
    launch and roofline fractions)."""
    fix = "refit it with `python -m llm_profile.calibrate`"
    if not isinstance(raw, dict) or any(key not in raw for key in CALIBRATION_KEYS):
        raise InputError(f"not a calibration table (needs {', '.join(CALIBRATION_KEYS)})",
                         str(path), fix)
    bad = [v for v in _leaves(raw) if isinstance(v, bool) or not isinstance(v, int | float)
           or v < 0]
    if bad:
        raise InputError(f"calibration value {bad[0]!r} is not a number >= 0", str(path), fix)
    return raw


def load_calibration(hardware: str) -> dict | None:
    """The fitted table of `hardware`, else the pooled generic one, else None."""
    for name in (hardware, "generic"):
        path = CALIBRATION_DIR / f"{name}.json"
        if path.is_file():
            return check_calibration(load_file(path, "refit it with `python -m "
                                               "llm_profile.calibrate`"), path)
    return None


def _report_line(model: str, cls: str, layer: float, whole: float) -> str:
    extra = "" if math.isnan(whole) else f"   iteration {whole:6.3f}"
    return f"  {model:35} {cls:10} per layer {layer:6.3f}{extra}"


@guarded
def main(argv: list[str] | None = None) -> int:
    """Fit and write the tables; with --report print the leave-one-model-out errors."""
    p = OneLineParser(prog="python -m llm_profile.calibrate", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--perf-models", required=True, type=path_arg)
    p.add_argument("--out", type=path_arg, default=CALIBRATION_DIR)
    p.add_argument("--model-configs", type=path_arg, default=MODEL_CONFIG_DIR)
    p.add_argument("--report", action="store_true")
    args = p.parse_args(argv)
    notes: list[str] = []  # printed once the inputs are known good (an error stands alone)
    try:
        by_hardware = load_all_samples(args.perf_models, args.model_configs, notes.append)
        if not by_hardware:
            why = f" ({len(notes)} skipped, e.g. {notes[0]})" if notes else ""
            raise InputError(f"no calibratable profiles{why}", str(args.perf_models),
                             "point --perf-models at <hardware>/<org>/<model>/tp<N>/layers.csv "
                             "of catalogue hardware and known model configs")
        pooled = [s for samples in by_hardware.values() for s in samples]
        generic = fit(pooled)
        if not generic["classes"]:  # the tables would replace good ones with empty ones
            raise InputError("the profiles hold matrix multiplies at fewer than two token "
                             "counts: nothing to fit", str(args.perf_models),
                             "profile the projections (q_proj, o_proj, ...) at several "
                             "token counts")
    except InputError as exc:
        print(exc.line(), file=sys.stderr)
        return 2
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    tables = {args.out / "generic.json": json.dumps(generic, indent=1) + "\n"}
    for hardware, samples in by_hardware.items():
        tables[args.out / f"{hardware}.json"] = \
            json.dumps(fit(samples, generic), indent=1) + "\n"
    write_all_atomic(tables)
    for hardware, samples in by_hardware.items():
        if args.report:
            print(f"{hardware}: leave-one-model-out median |error|")
            for row in leave_one_model_out(samples, pooled):
                print(_report_line(*row))
    if args.report:
        print("leave-one-hardware-out (pooled fit of the other GPUs) median |error|")
        for hardware, *row in leave_one_hardware_out(by_hardware):
            print(f"  {hardware:8}" + _report_line(*row))
    print_flag_warnings(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
