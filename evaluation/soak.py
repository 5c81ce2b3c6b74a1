"""Soak test: wall time and peak memory of long generated traces (`python -m evaluation.soak`).

For each size (default 10^4 and 10^5 requests; `--sizes 10000,100000,1000000` adds a million)
and each cluster (one A6000 instance, and the dual-node four-instance config), a trace of
ShareGPT-like requests is generated at a rate that keeps the cluster busy but stable (about
88 % of what it serves: one A6000 with Llama-3.1-8B serves about 9 of these requests per
second, so 8 req/s, and the four instances 32 req/s), and `main.py` runs it in a fresh
process with its per-request CSV written. The table gives wall seconds, the process's CPU
seconds (user + system: steadier than wall time on a shared machine), requests per second of
wall time and the process's peak RSS, so a memory that grows with the trace shows as a growing
last column.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llmsim_core.args import OneLineParser, integer, print_flag_warnings
from llmsim_core.cli_guard import guarded
from llmsim_core.errors import InputError

REPO = Path(__file__).resolve().parents[1]
CLUSTERS = (("single A6000", "cluster_config/single_node_single_instance.json", 8.0),
            ("dual node, 4 instances", "cluster_config/dual_node_multi_instance.json", 32.0))
MAX_SIZE = 10_000_000  # the trace generator's limit (dataset.generate --num-req)


def run_one(config: str, trace: Path, size: int, out: Path) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak RSS (MiB) of one run."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "main.py", "--cluster-config", config,
                              "--dataset", str(trace), "--num-req", str(size), "--quiet",
                              "--no-progress", "--output", str(out)], cwd=REPO,
                             stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"soak run failed: {config}, {size} requests")
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def parse_sizes(text: str) -> list[int]:
    """The request counts of `--sizes` (comma-separated, each in 1..MAX_SIZE)."""
    sizes = []
    for part in text.split(","):
        try:
            size = integer(part.strip())
        except (argparse.ArgumentTypeError, ValueError):  # int() refuses 4300+ digits
            size = 0
        if not 1 <= size <= MAX_SIZE:
            raise InputError(f"--sizes must be comma-separated request counts in 1..10^7, got "
                             f"{text[:40]!r}", "command line", "pass e.g. --sizes 10000,100000")
        sizes.append(size)
    return sizes


@guarded
def main(argv: list[str] | None = None) -> int:
    """Generate the traces, run every (cluster, size) and print the table."""
    parser = OneLineParser(prog="python -m evaluation.soak",
                           description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000",
                        help="comma-separated request counts (default: %(default)s)")
    args = parser.parse_args(argv)
    sizes = parse_sizes(args.sizes)
    print(f"{'cluster':<24} {'requests':>9} {'wall s':>8} {'CPU s':>8} {'req/s':>8} "
          f"{'peak MiB':>9}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for label, config, rate in CLUSTERS:
            for size in sizes:
                trace = tmp / f"trace_{rate:g}_{size}.jsonl"
                made = subprocess.run([sys.executable, "-m", "dataset.generate", "--out",
                                       str(trace), "--num-req", str(size), "--rate", str(rate),
                                       "--no-token-ids", "--seed", "7"], cwd=REPO,
                                      capture_output=True, text=True)
                if made.returncode:
                    raise SystemExit(f"trace generation failed: {made.stderr.strip()}")
                wall, cpu, peak = run_one(config, trace, size, tmp / "out.csv")
                print(f"{label:<24} {size:9d} {wall:8.1f} {cpu:8.1f} {size / wall:8.0f} "
                      f"{peak:9.1f}", flush=True)
                trace.unlink()
    print_flag_warnings(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
