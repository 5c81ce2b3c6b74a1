"""Generate request traces in the LLMServingSim jsonl format, seeded and reproducible.

Example: python -m dataset.generate --out trace.jsonl --num-req 1000 --rate 10 \
             --input-dist sharegpt --output-dist sharegpt --seed 42
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np

from inference_serving.output_paths import check_output_paths
from llmsim_core.args import OneLineParser, file_arg, integer, number, print_flag_warnings
from llmsim_core.atomic_write import temp_prefix
from llmsim_core.bounds import ARRIVAL_NS, INT32_MAX, Bound, checked
from llmsim_core.cli_guard import guarded
from llmsim_core.errors import InputError

# ShareGPT-like lengths, fitted to the 300 requests of the third-party trace
# sharegpt_req300_rate10_llama.jsonl (Llama-3.1 tokens; every request has prompt + answer
# <= 2048). Each law's parameters maximise the likelihood of the observed integer lengths under
# the continuous law truncated to [0.5, 2047.5] and rounded (grid search for the Weibull,
# EM start then coordinate ascent for the mixture). Only these numbers are kept, not the data.
# * Prompts: mixture of two log-normals, (weight, mean of ln tokens, std of ln tokens). Prompt
#   lengths are bimodal in log space (short questions, long pasted texts); a single log-normal
#   put the median at 55 tokens instead of 34.5 (Kolmogorov-Smirnov distance 0.106 vs 0.041).
# * Answers: Weibull, scale 304.5 tokens and shape 1.495. Answer lengths are skewed to the left
#   in log space, which a log-normal cannot follow (KS 0.138 vs 0.070 for the Weibull).
SHAREGPT_INPUT_LOGNORMALS = ((0.565, 2.811, 0.930), (0.435, 6.216, 1.471))
SHAREGPT_OUTPUT_WEIBULL = (304.5, 1.495)

_STD_NORMAL = NormalDist()
DEFAULT_VOCAB = 128256  # Llama-3.1's vocabulary
MAX_IDS = 1 << 20  # token ids per request: beyond every model's context, and 8 MB of JSON


@dataclass(frozen=True, slots=True)
class LengthDist:
    """A token-length law; `params` by kind: fixed (n), uniform (lo, hi), lognormal
    ((weight, mu, sigma), ...) for a mixture, weibull (scale, shape)."""

    kind: str
    params: tuple

    @property
    def minimum(self) -> int:
        """Smallest length this law can produce."""
        return int(self.params[0]) if self.kind in ("fixed", "uniform") else 1

    def sample(self, rng: np.random.Generator, cap: int) -> int:
        """One length in [minimum, cap], from this law truncated to `cap` (fixed is clipped)."""
        if self.kind == "fixed":
            return min(int(self.params[0]), cap)
        if self.kind == "uniform":
            return int(rng.integers(int(self.params[0]), min(int(self.params[1]), cap) + 1))
        # Inverse-CDF draw from the continuous law restricted to [0.5, cap + 0.5), then rounding:
        # unlike clipping this piles nothing up at the cap, and unlike rejection it costs a fixed
        # number of draws, so later requests do not depend on how often the cap was hit.
        lo, hi = 0.5, cap + 0.5
        if self.kind == "weibull":
            scale, shape = self.params
            u = rng.uniform(-math.expm1(-((lo / scale) ** shape)),
                            -math.expm1(-((hi / scale) ** shape)))
            x = scale * (-math.log1p(-u)) ** (1.0 / shape)
        else:
            # Truncating a mixture reweights each component by its mass inside the window.
            spans = [(w, mu, sigma, _STD_NORMAL.cdf((math.log(lo) - mu) / sigma),
                      _STD_NORMAL.cdf((math.log(hi) - mu) / sigma))
                     for w, mu, sigma in self.params]
            masses = np.array([w * (c_hi - c_lo) for w, _, _, c_lo, c_hi in spans])
            pick = int(np.searchsorted(np.cumsum(masses), rng.uniform(0.0, masses.sum()),
                                       side="right"))
            _, mu, sigma, c_lo, c_hi = spans[min(pick, len(spans) - 1)]
            x = math.exp(mu + sigma * _STD_NORMAL.inv_cdf(rng.uniform(c_lo, c_hi)))
        return min(max(round(x), 1), cap)


def parse_dist(text: str, output: bool) -> LengthDist:
    """Parse a length spec `fixed:N`, `uniform:LO:HI` or `sharegpt` (prompt or answer law)."""
    parts = text.split(":")
    try:
        numbers = [integer(p) for p in parts[1:]]
    except argparse.ArgumentTypeError:
        numbers = []
    if parts[0] == "fixed" and len(numbers) == 1 and numbers[0] >= 1:
        return LengthDist("fixed", (numbers[0],))
    if parts[0] == "uniform" and len(numbers) == 2 and 1 <= numbers[0] <= numbers[1]:
        return LengthDist("uniform", (numbers[0], numbers[1]))
    if text == "sharegpt":
        return LengthDist("weibull", SHAREGPT_OUTPUT_WEIBULL) if output else \
            LengthDist("lognormal", SHAREGPT_INPUT_LOGNORMALS)
    raise ValueError(f"bad length distribution {text!r}: use fixed:N, uniform:LO:HI (1 <= LO <= "
                     "HI) or sharegpt")


def generate_requests(num_req: int, rate: float, input_dist: LengthDist | str,
                      output_dist: LengthDist | str, arrival: str = "poisson",
                      cv: float = 1.0, max_total: int = 2048, seed: int = 42,
                      token_ids: bool = True, vocab_size: int = DEFAULT_VOCAB) -> Iterator[dict]:
    """Yield `num_req` request records with non-decreasing integer arrival times (ns)."""
    in_dist = parse_dist(input_dist, False) if isinstance(input_dist, str) else input_dist
    out_dist = parse_dist(output_dist, True) if isinstance(output_dist, str) else output_dist
    # Validate eagerly: a generator body would only raise on the first next().
    if num_req < 0:
        raise ValueError(f"num_req must be >= 0, got {num_req}")
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be a positive number, got {rate}")
    if arrival not in ("poisson", "gamma"):
        raise ValueError(f"arrival must be 'poisson' or 'gamma', got {arrival!r}")
    if not (math.isfinite(cv) and cv > 0):
        raise ValueError(f"cv must be a positive number, got {cv}")
    if in_dist.minimum + out_dist.minimum > max_total:
        raise ValueError(f"the shortest possible request ({in_dist.minimum} + "
                         f"{out_dist.minimum} tokens) exceeds max total {max_total}")
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
    return _requests(num_req, rate, in_dist, out_dist, arrival, cv, max_total, seed, token_ids,
                     vocab_size)


def _requests(num_req: int, rate: float, in_dist: LengthDist, out_dist: LengthDist,
              arrival: str, cv: float, max_total: int, seed: int, token_ids: bool,
              vocab_size: int) -> Iterator[dict]:
    rng = np.random.default_rng(seed)
    # Token ids come from a child stream of the same generator, so turning them off leaves the
    # lengths and arrival times of a trace unchanged.
    id_rng = rng.spawn(1)[0]
    mean_gap_s = 1.0 / rate
    shape = 1.0 / (cv * cv)
    t_s = 0.0
    for index in range(num_req):
        gap = rng.gamma(shape, mean_gap_s / shape) if arrival == "gamma" else \
            rng.exponential(mean_gap_s)
        # Accumulate in seconds and truncate once, so per-request rounding cannot drift the rate.
        t_s += gap
        prompt = in_dist.sample(rng, max_total - out_dist.minimum)
        answer = out_dist.sample(rng, max_total - prompt)
        record: dict = {"input_toks": prompt, "output_toks": answer,
                        "arrival_time_ns": int(t_s * 1e9)}
        if token_ids:
            if prompt + answer > MAX_IDS:
                raise InputError(f"request {index} would hold {prompt + answer} token ids, "
                                 f"more than {MAX_IDS} (longer than any model's context)",
                                 "--input-dist / --output-dist / --max-total",
                                 "draw shorter lengths, lower --max-total or pass "
                                 "--no-token-ids")
            record["input_tok_ids"] = id_rng.integers(0, vocab_size, prompt).tolist()
            record["output_tok_ids"] = id_rng.integers(0, vocab_size, answer).tolist()
        yield record


def write_trace(path: Path, records: Iterable[dict]) -> int:
    """Stream records to `path` one line each, atomically; return how many were written (a
    failure leaves neither the file nor the folders made for it)."""
    made = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
    tmp = ""
    count = 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            for record in records:
                handle.write(json.dumps(record) + "\n")
                count += 1
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a trace is an ordinary shared file
        os.replace(tmp, path)
    except BaseException:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        for folder in made:  # innermost first; each is empty unless someone else wrote there
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    return count


# Generator flag ranges: a trace the simulator reads back (32-bit token counts and ids, arrivals
# within its 10^15 ns window) that is written in minutes, not days.
NUM_REQ = Bound(1, 10_000_000, "", "a trace holds at least one and at most ten million requests",
                integer=True)
# Below one request per 10^6 s the first gap already overflows the simulator's arrival window.
RATE = Bound(1e-6, 1e6, "req/s", "slower rates put the first arrival beyond the simulator's "
             "window and faster ones are no serving load")
CV = Bound(1e-3, 100, "", "the gamma shape 1/cv² must stay a usable number")
MAX_TOTAL = Bound(2, INT32_MAX, "tokens", "a request has a prompt and an answer token and "
                  "token counts are 32-bit integers", integer=True)
SEED = Bound(0, 2**63 - 1, "", "seeds are non-negative 64-bit integers", integer=True)
VOCAB = Bound(1, INT32_MAX + 1, "", "token ids are 32-bit integers", integer=True)


def _number(kind: type, bound: Bound, flag: str) -> Callable[[str], float]:
    """An argparse type: the text as `kind`, inside `bound`."""
    def parse(text: str) -> float:
        try:
            value = integer(text) if kind is int else number(text)
        except (ValueError, argparse.ArgumentTypeError):
            raise argparse.ArgumentTypeError(f"not {'an integer' if kind is int else 'a number'}:"
                                             f" {text!r}") from None
        try:
            return kind(checked(value, bound, flag, "command line", "pass a value in range"))
        except InputError as exc:
            raise argparse.ArgumentTypeError(exc.what) from None
    return parse


def _dist_arg(output: bool) -> Callable[[str], LengthDist]:
    def parse(text: str) -> LengthDist:
        try:
            dist = parse_dist(text, output)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if dist.kind in ("fixed", "uniform") and max(dist.params) > INT32_MAX:
            raise argparse.ArgumentTypeError(f"{text!r}: token counts are 32-bit integers "
                                             f"(at most {INT32_MAX})")
        return dist
    return parse


def _within_window(records: Iterable[dict]) -> Iterator[dict]:
    """The records, stopping with an InputError at an arrival the simulator would refuse."""
    for index, record in enumerate(records):
        if record["arrival_time_ns"] > ARRIVAL_NS.high:
            raise InputError(f"request {index} arrives after {ARRIVAL_NS.high:g} ns, beyond "
                             "what the simulator reads", "--rate / --num-req",
                             "raise --rate or lower --num-req")
        yield record


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m dataset.generate", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=file_arg, help="trace file to write (.jsonl)")
    p.add_argument("--num-req", required=True, type=_number(int, NUM_REQ, "--num-req"),
                   help="number of requests")
    p.add_argument("--rate", required=True, type=_number(float, RATE, "--rate"),
                   help="mean arrival rate (requests/s)")
    p.add_argument("--arrival", choices=("poisson", "gamma"), default="poisson",
                   help="inter-arrival law (default poisson)")
    p.add_argument("--cv", type=_number(float, CV, "--cv"),
                   help="coefficient of variation of the gamma gaps (default 1 = Poisson)")
    p.add_argument("--input-dist", default="sharegpt", type=_dist_arg(output=False),
                   help="prompt lengths: fixed:N, uniform:LO:HI or sharegpt (default)")
    p.add_argument("--output-dist", default="sharegpt", type=_dist_arg(output=True),
                   help="answer lengths: fixed:N, uniform:LO:HI or sharegpt (default)")
    p.add_argument("--max-total", type=_number(int, MAX_TOTAL, "--max-total"), default=2048,
                   help="cap on prompt + answer tokens (default 2048)")
    p.add_argument("--seed", type=_number(int, SEED, "--seed"), default=42,
                   help="seed of the random generator (default 42)")
    p.add_argument("--token-ids", action=argparse.BooleanOptionalAction, default=True,
                   help="write random input/output token ids, needed for prefix caching "
                        "(default on)")
    p.add_argument("--vocab-size", type=_number(int, VOCAB, "--vocab-size"), default=None,
                   help="token ids are drawn from [0, vocab-size) (default 128256, Llama-3.1)")
    return p


@guarded
def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: write one trace file."""
    p = _parser()
    args = p.parse_args(argv)
    if args.cv is not None and args.arrival != "gamma":
        p.error("--cv needs --arrival gamma")
    if not args.token_ids and args.vocab_size is not None:
        p.error("--vocab-size has no effect with --no-token-ids")
    try:
        records = generate_requests(args.num_req, args.rate, args.input_dist, args.output_dist,
                                    args.arrival, args.cv or 1.0, args.max_total, args.seed,
                                    args.token_ids, args.vocab_size or DEFAULT_VOCAB)
    except ValueError as exc:
        p.error(str(exc))
    try:
        check_output_paths({"--out": args.out}, inputs=())
        count = write_trace(args.out, _within_window(records))
    except InputError as exc:
        print(exc.line(), file=sys.stderr)
        return 2
    print(f"wrote {count} requests to {args.out}", file=sys.stderr)
    print_flag_warnings(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
