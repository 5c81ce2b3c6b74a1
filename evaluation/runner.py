"""Run experiments through the simulator's command line, two at a time."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from evaluation.experiments import COMMON_FLAGS, Experiment
from llmsim_core.atomic_write import atomic_writer
from llmsim_core.errors import StopSignal

REPO = Path(__file__).resolve().parents[1]
WORKERS = 2  # the simulator is single-threaded; one subprocess per core
# Exit statuses of a run stopped by SIGHUP, SIGINT or SIGTERM (128 + n from the run's own
# handler, -n when the signal killed it).
INTERRUPTED = frozenset(code for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM)
                        for code in (128 + sig, -sig))


@dataclass(frozen=True, slots=True)
class RunRecord:
    """Outcome of one simulator run: exit status, error line, wall time, written files."""

    experiment: Experiment
    returncode: int
    error: str
    wall_s: float
    log: Path
    result: Path
    throughput_csv: Path


@cache
def simulator_flags() -> frozenset[str]:
    """Every `--flag` that `main.py --help` lists: what this simulator build supports."""
    done = subprocess.run([sys.executable, "main.py", "--help"], cwd=REPO, capture_output=True,
                          text=True, check=True)
    return frozenset(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", done.stdout))


def missing_flags(exp: Experiment) -> list[str]:
    """The experiment's feature flags that the simulator does not accept."""
    return [f for f in exp.flags if f.startswith("--") and f not in simulator_flags()]


def command(exp: Experiment, data: Path, out: Path, num_req: int | None) -> list[str]:
    """The `python main.py ...` command line of one experiment."""
    folder = exp.folder(out)
    config = data / "artifact_configs" / f"figure_{exp.figure}" / (exp.hw or "") / exp.config
    return [sys.executable, "main.py", "--cluster-config", str(config),
            "--dataset", str(data / "datasets" / f"{exp.dataset}.jsonl"),
            "--num-req", str(num_req or exp.num_req),
            "--perf-models", str(data / "perf_models"),
            "--model-configs", str(data / "model_config"), *COMMON_FLAGS, *exp.flags,
            "--output", str(folder / "results" / exp.result_file),
            "--throughput-output", str(folder / "results" / f"{exp.run}_throughput.csv")]


def run_one(exp: Experiment, data: Path, out: Path, num_req: int | None) -> RunRecord:
    """Run one experiment; its stdout becomes `logs/<log_file>`."""
    folder = exp.folder(out)
    for sub in ("results", "logs", "parsed"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    log = folder / "logs" / exp.log_file
    start = time.perf_counter()
    # The log is renamed into place only after a run that was not interrupted.
    with atomic_writer(log) as handle:
        done = subprocess.run(command(exp, data, out, num_req), cwd=REPO, stdout=handle,
                              stderr=subprocess.PIPE, text=True)
        if done.returncode in INTERRUPTED:
            raise StopSignal(signal.SIGINT)
    wall = time.perf_counter() - start
    error = done.stderr.strip().splitlines()[-1] if done.returncode and done.stderr.strip() \
        else ""
    return RunRecord(exp, done.returncode, error, wall, log,
                     folder / "results" / exp.result_file,
                     folder / "results" / f"{exp.run}_throughput.csv")


def run_all(exps: list[Experiment], data: Path, out: Path,
            num_req: int | None) -> list[RunRecord]:
    """Run experiments in parallel; records in the order given."""
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return list(pool.map(lambda e: run_one(e, data, out, num_req), exps))
