"""Attention latency predictor: a seeded random forest trained on `attention.csv`.

Writes the dense `predictions/attn_{prefill,decode}_predictions.csv` grids the simulator reads
(prefill: prior KV 0…2048 step 64 × chunk 32…max length step 32; decode: batch 1…256 × mean
context 0…2048 step 64), or answers live for `--enable-attn-prediction`. Prefill features are
(prior KV, chunk, chunk², KV·chunk); decode features are (batch, mean context, batch·context);
the target is log latency, so relative errors are balanced across the grid.

    python -m llm_profile.attention_predictor --profile perf_models/A6000/org/model/tp1 --report
"""

from __future__ import annotations

import argparse
import io
import sys
from dataclasses import dataclass

import numpy as np

from llm_profile.profile_tables import RawAttention, read_raw_attention
from llmsim_core.args import OneLineParser, integer, path_arg, print_flag_warnings
from llmsim_core.atomic_write import write_all_atomic
from llmsim_core.cli_guard import guarded
from llmsim_core.errors import InputError

KV_GRID = np.arange(0, 2049, 64)
BATCH_GRID = np.arange(1, 257)


def _prefill_features(kv: np.ndarray, chunk: np.ndarray) -> np.ndarray:
    return np.column_stack([kv, chunk, chunk * chunk, kv * chunk])


def _decode_features(batch: np.ndarray, context: np.ndarray) -> np.ndarray:
    return np.column_stack([batch, context, batch * context])


def _forest(seed: int):
    try:
        from sklearn.ensemble import RandomForestRegressor
    except ImportError:
        raise InputError("scikit-learn is not installed", "attention predictor",
                         "install the extra: pip install -e '.[profile]'") from None
    return RandomForestRegressor(n_estimators=100, min_samples_leaf=2, random_state=seed,
                                 n_jobs=1)


@dataclass
class AttentionPredictor:
    """Two fitted regressors: prefill (kv, chunk) and decode (batch, context) → ns."""

    prefill: object
    decode: object
    held_out_error: tuple[float, float]

    @classmethod
    def train(cls, raw: RawAttention, seed: int = 42, holdout: float = 0.2
              ) -> AttentionPredictor:
        """Fit both models; report the median relative error on a seeded held-out split."""
        rng = np.random.default_rng(seed)
        models, errors = [], []
        for points, features in ((raw.prefill, _prefill_features),
                                 (raw.decode, _decode_features)):
            x = features(points[:, 0], points[:, 1])
            y = np.log(np.maximum(points[:, 2], 1.0))
            test = rng.random(len(y)) < holdout
            probe = _forest(seed).fit(x[~test], y[~test])
            errors.append(float(np.median(np.abs(np.exp(probe.predict(x[test]) - y[test]) - 1)))
                          if test.any() else float("nan"))
            models.append(_forest(seed).fit(x, y))
        return cls(models[0], models[1], (errors[0], errors[1]))

    def prefill_ns(self, kv: np.ndarray, chunk: np.ndarray) -> np.ndarray:
        """Predicted ns for prefill keys (arrays of equal length)."""
        return np.exp(self.prefill.predict(_prefill_features(kv, chunk)))

    def decode_ns(self, batch: np.ndarray, context: np.ndarray) -> np.ndarray:
        """Predicted ns for decode keys."""
        return np.exp(self.decode.predict(_decode_features(batch, context)))


def _csv(header: str, *columns: np.ndarray) -> str:
    out = io.StringIO()
    out.write(header + "\n")
    np.savetxt(out, np.column_stack(columns), fmt="%d", delimiter=",")
    return out.getvalue()


MAX_CHUNK = 131_072  # the longest context of the shipped models: a larger grid is hours of work


def grids(predictor: AttentionPredictor, max_len: int) -> tuple[str, str]:
    """The two prediction CSVs (integer ns) in the LLMServingSim layout."""
    kv, chunk = (a.ravel() for a in np.meshgrid(KV_GRID, np.arange(32, max_len + 1, 32),
                                                  indexing="ij"))
    batch, context = (a.ravel() for a in np.meshgrid(BATCH_GRID, KV_GRID, indexing="ij"))
    prefill = np.rint(predictor.prefill_ns(kv, chunk)).astype(np.int64)
    decode = np.rint(predictor.decode_ns(batch, context)).astype(np.int64)
    return (_csv("kv_cache_size,prefill_chunk_size,prediction", kv, chunk, prefill),
            _csv("batch_size,kv_cache_size,prediction", batch, context, decode))


@guarded
def main(argv: list[str] | None = None) -> int:
    """Train on `<profile>/attention.csv` and write `<out>/predictions/*.csv`."""
    p = OneLineParser(prog="python -m llm_profile.attention_predictor", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", required=True, type=path_arg, help="folder with attention.csv")
    p.add_argument("--out", type=path_arg, help="where predictions/ goes (default: --profile)")
    p.add_argument("--max-len", type=integer, default=2048, help="largest prefill chunk")
    p.add_argument("--seed", type=integer, default=42)
    p.add_argument("--report", action="store_true", help="print the held-out error")
    args = p.parse_args(argv)
    try:
        if not 32 <= args.max_len <= MAX_CHUNK or args.max_len % 32:
            raise InputError(f"--max-len must be a multiple of 32 in 32..{MAX_CHUNK} (prefill "
                             f"chunks on a grid of 32), got {args.max_len}", "command line",
                             "pass the largest prefill chunk the profile should cover")
        if not 0 <= args.seed < 2**32:
            raise InputError(f"--seed must be in 0..{2**32 - 1}, got {args.seed}",
                             "command line", "pass a smaller seed")
        path = args.profile / "attention.csv"
        if not path.is_file():
            raise InputError("missing attention.csv", str(path), "profile attention first")
        predictor = AttentionPredictor.train(read_raw_attention(path), args.seed)
        prefill, decode = grids(predictor, args.max_len)
    except InputError as exc:
        print(exc.line(), file=sys.stderr)
        return 2
    folder = (args.out or args.profile) / "predictions"
    write_all_atomic({folder / "attn_prefill_predictions.csv": prefill,
                      folder / "attn_decode_predictions.csv": decode})
    if args.report:
        print(f"held-out median relative error: prefill {predictor.held_out_error[0]:.3f}, "
              f"decode {predictor.held_out_error[1]:.3f}")
    print_flag_warnings(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
