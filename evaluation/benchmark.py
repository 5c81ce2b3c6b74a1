"""Speed benchmark: whole-process wall time, simulated requests per wall-second, peak memory.

Each case runs `python main.py ...` in a fresh process (what a user pays, imports included)
and reads the child's peak RSS from the OS. Usage: `python evaluation/benchmark.py [--repeat N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# LLMSIM_DATA points at the data from a checkout that does not sit beside it (a git worktree).
DATA = Path(os.environ.get("LLMSIM_DATA", REPO.parent / "shared" / "data"))
OBSERVED_BASE = "ShareGPT 300 req, A6000 Llama-3.1-8B, measured profiles"
OBSERVED = "ShareGPT 300 req, same, + --trace-output --plot-dir"
PREFIX = ("--enable-prefix-caching", "--prefix-storage", "CPU", "--enable-prefix-sharing")
POWERED = "ShareGPT 300 req, same, + a power block (power and energy on)"


@dataclass(frozen=True)
class Case:
    """One benchmark run: a label, the request count and the main.py arguments."""

    label: str
    requests: int
    args: tuple[str, ...]
    target_s: float
    module: str | None = None  # run `python -m module args` instead of main.py


def _cases(tmp: Path) -> list[Case]:
    cases = []
    if DATA.is_dir():
        single = str(DATA / "cluster_config/single_node_single_instance.json")
        for n, target in ((100, 1.0), (300, 0.5)):
            cases.append(Case(f"ShareGPT {n} req, A6000 Llama-3.1-8B, measured profiles", n, (
                "--cluster-config", single,
                "--dataset", str(DATA / f"datasets/sharegpt_req{n}_rate10_llama.jsonl"),
                "--perf-models", str(DATA / "perf_models"), "--num-req", str(n)), target))
        # The timeline and plot observers may add at most 30 % to the same run.
        base = cases[-1]
        # The engine replay of every iteration may take up to 5x the closed form.
        cases.append(Case(f"{base.label}, --pricer replay", base.requests,
                          (*base.args, "--pricer", "replay"), base.target_s * 5))
        cases.append(Case(OBSERVED, base.requests, (
            *base.args, "--trace-output", str(tmp / "trace.json"), "--plot-dir",
            str(tmp / "plots")), base.target_s * 1.3))
        cases.append(Case("ShareGPT 300 req, prefix caching + shared CPU tier, 2 A6000 instances",
                          300, (*base.args, "--cluster-config",
                                str(DATA / "cluster_config/single_node_multi_instance.json"),
                                *PREFIX), 1.0))
        # Power modelling may add at most 20 % to the same run.
        cfg = json.loads(Path(single).read_text())
        power = json.loads((REPO / "cluster_config/single_node_power_instance.json").read_text())
        cfg["nodes"][0]["power"] = power["nodes"][0]["power"]
        (tmp / "power.json").write_text(json.dumps(cfg))
        powered = list(base.args)
        powered[powered.index(single)] = str(tmp / "power.json")
        cases.append(Case(POWERED, base.requests, tuple(powered), base.target_s * 1.2))
        # Figure 10: PIM attention offload with sub-batch interleaving, 256 req x 512 tokens.
        cases.append(Case("Figure 10 PIM + SBI, 256 req x 512 out, A6000 Llama-3.1-8B", 256, (
            "--cluster-config", str(DATA / "artifact_configs/figure_10/pim_config.json"),
            "--dataset", str(DATA / "datasets/fixed_in128_out512_req256_rate10.jsonl"),
            "--perf-models", str(DATA / "perf_models"), "--num-req", "256",
            "--scheduler", "legacy", "--enable-attn-offloading",
            "--enable-sub-batch-interleaving"), 3.0))
    else:
        print("../shared/data not found: skipping the measured-profile cases", file=sys.stderr)
    trace = tmp / "generated_10k.jsonl"
    subprocess.run([sys.executable, "-m", "dataset.generate", "--out", str(trace),
                    "--num-req", "10000", "--rate", "20", "--input-dist", "sharegpt",
                    "--output-dist", "sharegpt", "--no-token-ids", "--seed", "1"],
                   cwd=REPO, check=True)
    cases.append(Case("generated 10,000 req, rate 20/s, A6000 Llama-3.1-8B, roofline", 10_000, (
        "--cluster-config", "cluster_config/single_node_single_instance.json",
        "--dataset", str(trace), "--num-req", "10000"), 5.0))
    busy = tmp / "generated_10k_rate40.jsonl"
    subprocess.run([sys.executable, "-m", "dataset.generate", "--out", str(busy),
                    "--num-req", "10000", "--rate", "40", "--no-token-ids", "--seed", "3"],
                   cwd=REPO, check=True)
    sixteen = ("--cluster-config", "cluster_config/four_node_16_instance_pd.json",
               "--dataset", str(busy))
    cases.append(Case("4 nodes, 16 H100 instances (4 prefill + 12 decode), 10,000 req", 10_000,
                      (*sixteen, "--num-req", "10000"), 20.0))
    cases.append(Case("4 nodes, 16 H100 instances, 10,000 req, --pricer replay", 10_000,
                      (*sixteen, "--num-req", "10000", "--pricer", "replay"), 5 * 20.0))
    # Prefix caching hashes token ids: the same arrivals, with ids, may take up to 3x.
    with_ids = tmp / "generated_10k_rate40_ids.jsonl"
    subprocess.run([sys.executable, "-m", "dataset.generate", "--out", str(with_ids),
                    "--num-req", "10000", "--rate", "40", "--seed", "3"], cwd=REPO, check=True)
    cases.append(Case("4 nodes, 16 H100 instances, 10,000 req, prefix caching", 10_000,
                      ("--cluster-config", "cluster_config/four_node_16_instance_pd.json",
                       "--dataset", str(with_ids), "--num-req", "10000",
                       "--enable-prefix-caching"), 3 * 20.0))
    # The shipped sweep: 3 configurations x 4 rates x 1,000 requests, two processes, with plot.
    cases.append(Case("sweep llama70b_8xh100 (12 points x 1,000 req), --jobs 2", 12_000, (
        "evaluation/sweeps/llama70b_8xh100_sweep.yaml", "--jobs", "2", "--out",
        str(tmp / "sweep.csv")), 15.0, module="evaluation.sweep"))
    return cases


def _run(case: Case, out: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one fresh `main.py` process."""
    # Python's bytecode cache on, as in any installed copy (some sandboxes switch it off).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    start = time.perf_counter()
    command = ["-m", case.module, *case.args] if case.module else \
        ["main.py", *case.args, "--output", str(out), "--no-progress"]
    child = subprocess.Popen([sys.executable, *command], cwd=REPO, stdout=subprocess.DEVNULL,
                             env=env)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"benchmark case failed: {case.label}")
    return wall, usage.ru_maxrss / 1024


def main() -> int:
    """Run every case and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; best is reported")
    parser.add_argument("--match", default="", help="run only the cases whose label contains it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        rows = []
        for case in (c for c in _cases(tmp) if args.match in c.label):
            walls, peaks = [], []
            for _ in range(args.repeat):
                wall, peak = _run(case, tmp / "out.csv")
                walls.append(wall)
                peaks.append(peak)
            best = min(walls)
            rows.append((case.label, best, case.requests / best, max(peaks), case.target_s))
    print(f"{'case':<66} {'wall s':>7} {'req/s':>8} {'peak MiB':>9} {'target s':>8}")
    for label, wall, rate, peak, target in rows:
        flag = "" if wall <= target else "  (over target)"
        print(f"{label:<66} {wall:7.2f} {rate:8.0f} {peak:9.1f} {target:8.1f}{flag}")
    labels = [row[0] for row in rows]
    if OBSERVED in labels:
        k = labels.index(OBSERVED)
        base = labels.index(OBSERVED_BASE)
        print(f"--trace-output and --plot-dir add {(rows[k][1] / rows[base][1] - 1) * 100:.0f} "
              "% to the 300-request run (limit 30 %)")
    if POWERED in labels:
        k = labels.index(POWERED)
        base = labels.index(OBSERVED_BASE)
        print(f"power modelling adds {(rows[k][1] / rows[base][1] - 1) * 100:.0f} % to the "
              "300-request run (limit 20 %)")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; peak = the process's max "
          "RSS; best of --repeat runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
