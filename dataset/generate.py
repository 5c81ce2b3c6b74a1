"""Generate request traces in the LLMServingSim jsonl format, seeded and reproducible.

Example: python -m dataset.generate --out trace.jsonl --num-req 1000 --rate 10 \
             --input-dist sharegpt --output-dist sharegpt --seed 42
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Log-normal fits (mean and std of ln(tokens)) to the prompt and answer lengths of a public
# 300-request ShareGPT sample tokenized for Llama-3.1 (median prompt 34, mean 224; median answer
# 268, mean 278). Only these four numbers are kept, not the data.
SHAREGPT_INPUT = (3.964, 1.772)
SHAREGPT_OUTPUT = (5.301, 1.033)


@dataclass(frozen=True, slots=True)
class LengthDist:
    """A token-length distribution: `fixed:N`, `uniform:LO:HI` or `sharegpt-in/-out`."""

    kind: str
    a: float = 0.0
    b: float = 0.0

    def sample(self, rng: np.random.Generator) -> int:
        """One length, at least 1."""
        if self.kind == "fixed":
            return int(self.a)
        if self.kind == "uniform":
            return int(rng.integers(int(self.a), int(self.b) + 1))
        return max(1, int(round(rng.lognormal(self.a, self.b))))


def parse_dist(text: str, output: bool) -> LengthDist:
    """Parse a --input-dist / --output-dist value."""
    parts = text.split(":")
    try:
        if parts[0] == "fixed" and len(parts) == 2 and int(parts[1]) >= 1:
            return LengthDist("fixed", int(parts[1]))
        if parts[0] == "uniform" and len(parts) == 3 and 1 <= int(parts[1]) <= int(parts[2]):
            return LengthDist("uniform", int(parts[1]), int(parts[2]))
    except ValueError:
        pass
    if text == "sharegpt":
        return LengthDist("lognormal", *(SHAREGPT_OUTPUT if output else SHAREGPT_INPUT))
    raise argparse.ArgumentTypeError(f"bad length distribution {text!r}: use fixed:N, "
                                     "uniform:LO:HI or sharegpt")


def generate_requests(num_req: int, rate: float, input_dist: LengthDist,
                      output_dist: LengthDist, arrival: str = "poisson", cv: float = 1.0,
                      max_total: int = 2048, seed: int = 42, token_ids: bool = True,
                      vocab_size: int = 128256) -> Iterator[dict]:
    """Yield request records with non-decreasing integer arrival times (ns)."""
    rng = np.random.default_rng(seed)
    mean_gap_s = 1.0 / rate
    t_ns = 0
    for _ in range(num_req):
        if arrival == "gamma":
            shape = 1.0 / (cv * cv)
            gap = rng.gamma(shape, mean_gap_s / shape)
        else:
            gap = rng.exponential(mean_gap_s)
        t_ns += int(gap * 1e9)
        prompt = min(input_dist.sample(rng), max_total - 1)
        answer = max(1, min(output_dist.sample(rng), max_total - prompt))
        record = {"input_toks": prompt, "output_toks": answer, "arrival_time_ns": t_ns}
        if token_ids:
            record["input_tok_ids"] = rng.integers(0, vocab_size, prompt).tolist()
            record["output_tok_ids"] = rng.integers(0, vocab_size, answer).tolist()
        yield record


def write_trace(path: Path, records: Iterator[dict]) -> int:
    """Stream records to `path` atomically; return how many were written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    count = 0
    try:
        with os.fdopen(fd, "w") as handle:
            for record in records:
                handle.write(json.dumps(record, separators=(", ", ": ")) + "\n")
                count += 1
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a trace is an ordinary shared file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def _positive(kind: type) -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return parse


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(prog="python -m dataset.generate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="trace file to write (.jsonl)")
    p.add_argument("--num-req", required=True, type=_positive(int), help="requests")
    p.add_argument("--rate", required=True, type=_positive(float), help="mean requests/s")
    p.add_argument("--arrival", choices=("poisson", "gamma"), default="poisson")
    p.add_argument("--cv", type=_positive(float), default=1.0,
                   help="coefficient of variation of gamma inter-arrival gaps")
    p.add_argument("--input-dist", default="sharegpt",
                   type=lambda t: parse_dist(t, output=False),
                   help="prompt lengths: fixed:N, uniform:LO:HI or sharegpt")
    p.add_argument("--output-dist", default="sharegpt",
                   type=lambda t: parse_dist(t, output=True),
                   help="answer lengths: fixed:N, uniform:LO:HI or sharegpt")
    p.add_argument("--max-total", type=_positive(int), default=2048,
                   help="cap on prompt + answer tokens")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--token-ids", action=argparse.BooleanOptionalAction, default=True,
                   help="include random input/output token ids (needed for prefix caching)")
    p.add_argument("--vocab-size", type=_positive(int), default=128256)
    args = p.parse_args(argv)
    if args.max_total < 2:
        p.error("--max-total must be at least 2")
    count = write_trace(args.out, generate_requests(
        args.num_req, args.rate, args.input_dist, args.output_dist, args.arrival, args.cv,
        args.max_total, args.seed, args.token_ids, args.vocab_size))
    print(f"wrote {count} requests to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
