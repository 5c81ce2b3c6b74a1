"""Measure an NPU's power states for a cluster config's `power.npu` entry (formats.md §1.7).

Samples the GPU's board power through NVML (the `power` extra: nvidia-ml-py) for a while before,
during and after a command, then estimates the three states of the power model:

* idle: the median of the samples before the command started (the GPU at rest);
* active: the 95th percentile of the samples while the command ran (kernels running);
* standby: after the last active sample, the GPU stays above idle for a while before it drops
  back; standby power is the median of that stretch and `standby_duration` its length (s).

    python -m llm_profile.power --hardware A6000 [--gpu 0] [--interval 0.05] [--idle 5]
        [--tail 30] [--output power.json] [--samples-output samples.csv] -- <command ...>
    python -m llm_profile.power --hardware A6000 --samples samples.csv   (re-estimate)

The JSON written is `{"npu": {"<hardware>": {idle_power, standby_power, active_power,
standby_duration}}}`, ready to paste into a node's `power` block. A sample file is CSV with
the header `time_s,power_w,phase` (phase: `before`, `during` or `after`).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmsim_core.args import OneLineParser, file_arg, integer, number, path_arg, print_flag_warnings
from llmsim_core.atomic_write import write_atomic
from llmsim_core.cli_guard import guarded
from llmsim_core.errors import InputError
from llmsim_core.strict_json import read_text

PHASES = ("before", "during", "after")
ACTIVE_PERCENTILE = 95
# A sample counts as above idle when it exceeds idle by this fraction (or 2 W): NVML readings
# of a resting GPU wander by a few watts.
IDLE_MARGIN = 0.05
IDLE_MARGIN_W = 2.0
# Sanity limits of one sample: no GPU board draws a megawatt; a year of sampling is a clock
# error. Both also stop NaN and infinity.
MAX_POWER_W = 1e6
MAX_TIME_S = 3.2e7
MAX_GPUS = 1024  # NVML device indices of one machine
# Flags of a live recording, meaningless with --samples (their defaults applied when unset).
RECORDING = {"gpu": ("--gpu", 0), "interval": ("--interval", 0.05), "idle": ("--idle", 5.0),
             "tail": ("--tail", 30.0), "samples_output": ("--samples-output", None)}


@dataclass(frozen=True, slots=True)
class Sample:
    """One power reading: seconds since sampling started, watts, and the command's phase."""

    time_s: float
    power_w: float
    phase: str


@dataclass(frozen=True, slots=True)
class NpuEstimate:
    """The `power.npu.<hardware>` values (W, W, W, s)."""

    idle_power: float
    standby_power: float
    active_power: float
    standby_duration: float

    def entry(self) -> dict[str, float]:
        """The JSON object of the estimate, powers rounded to 0.1 W and time to 0.1 s."""
        return {"idle_power": round(self.idle_power, 1),
                "standby_power": round(self.standby_power, 1),
                "active_power": round(self.active_power, 1),
                "standby_duration": round(self.standby_duration, 1)}


def estimate(samples: list[Sample], where: str = "power samples") -> NpuEstimate:
    """Idle, active and standby power and the standby duration of a sample series (`where`
    names it in an error)."""
    by_phase = {p: [s for s in samples if s.phase == p] for p in PHASES}
    for phase in ("before", "during"):
        if not by_phase[phase]:
            raise InputError(f"no samples taken {phase} the command", where,
                             "sample longer (raise --idle, or run a longer command)")
    idle = float(np.median([s.power_w for s in by_phase["before"]]))
    active = float(np.percentile([s.power_w for s in by_phase["during"]], ACTIVE_PERCENTILE))
    if active < idle:  # the command drew less than the resting GPU: the phases are mixed up
        raise InputError(f"the power while the command ran ({active:.1f} W, the "
                         f"{ACTIVE_PERCENTILE}th percentile) is below the idle power before it "
                         f"({idle:.1f} W)", where, "record again with a command that loads the "
                         "GPU, and check the phases of the samples")
    above = idle + max(IDLE_MARGIN * idle, IDLE_MARGIN_W)
    half = (idle + active) / 2
    ordered = sorted(samples, key=lambda s: s.time_s)
    busy = [k for k, s in enumerate(ordered) if s.phase == "during" and s.power_w >= half]
    start = busy[-1] + 1 if busy else next(k for k, s in enumerate(ordered)
                                            if s.phase != "before")
    # The standby stretch: consecutive samples above idle after the last active one.
    stretch = []
    for s in ordered[start:]:
        if s.power_w <= above:
            break
        stretch.append(s)
    if not stretch:
        return NpuEstimate(idle, idle, active, 0.0)
    standby = float(np.median([s.power_w for s in stretch]))
    began = ordered[start - 1].time_s if start else stretch[0].time_s
    return NpuEstimate(idle, min(max(standby, idle), active), active,
                       stretch[-1].time_s - began)


def read_samples(path: Path) -> list[Sample]:
    """A sample file written by --samples-output (header time_s,power_w,phase)."""
    if not path.is_file():
        raise InputError("sample file not found", str(path), "pass a file written by "
                         "--samples-output")
    reader = csv.DictReader(io.StringIO(read_text(path, "pass a file written by "
                                                  "--samples-output")))
    if reader.fieldnames != list(SAMPLE_HEADER):
        raise InputError(f"the header is {','.join(reader.fieldnames or [])[:80]!r}, not "
                         f"{','.join(SAMPLE_HEADER)}", str(path),
                         "pass a file written by --samples-output")
    out = []
    for n, row in enumerate(reader, start=2):
        if None in row:
            raise InputError("more fields than the header", f"line {n} of {path}",
                             "fix the row")
        try:  # the flags' strict grammar: float() would also take `6_0` and non-ASCII digits
            sample = Sample(number(row["time_s"]), number(row["power_w"]), row["phase"])
        except (KeyError, TypeError, ValueError, argparse.ArgumentTypeError):
            raise InputError("expected time_s,power_w,phase with plain decimal numbers (e.g. "
                             "1.25,80.5,before)", f"line {n} of {path}", "fix the row") from None
        if sample.phase not in PHASES or not 0 <= sample.power_w <= MAX_POWER_W or \
                not 0 <= sample.time_s <= MAX_TIME_S:
            raise InputError(f"sample at {row['time_s']} s of {row['power_w']} W in phase "
                             f"{row['phase']!r} is out of range", f"line {n} of {path}",
                             f"use a phase of {', '.join(PHASES)}, a power in [0, "
                             f"{MAX_POWER_W:g}] W and a time in [0, {MAX_TIME_S:g}] s")
        if out and (sample.time_s < out[-1].time_s or
                    PHASES.index(sample.phase) < PHASES.index(out[-1].phase)):
            raise InputError(f"sample at {row['time_s']} s in phase {row['phase']!r} comes "
                             f"after one at {out[-1].time_s:g} s in phase {out[-1].phase!r}",
                             f"line {n} of {path}", "list the samples in the order they were "
                             f"taken ({', '.join(PHASES)}), as --samples-output writes them")
        out.append(sample)
    if out and out[-1].time_s == out[0].time_s:
        raise InputError("every sample has the same time", str(path),
                         "pass a recording that spans time, as --samples-output writes it")
    if out and not any(s.power_w for s in out):
        raise InputError("every sample reads 0 W (a GPU without a power sensor?)", str(path),
                         "record on a GPU whose NVML reports power")
    return out


SAMPLE_HEADER = ("time_s", "power_w", "phase")


def samples_csv(samples: list[Sample]) -> str:
    """The sample file text."""
    lines = [",".join(SAMPLE_HEADER), *(f"{s.time_s:.4f},{s.power_w:.3f},{s.phase}"
                                       for s in samples)]
    return "\n".join(lines) + "\n"


def _nvml_reader(gpu: int):
    """A function returning the GPU's power in W, or an InputError when there is no GPU."""
    try:
        import pynvml
    except ImportError:
        raise InputError("NVML bindings are not installed", "python -m llm_profile.power",
                         "pip install 'llmservingsim-py[power]' on a machine with an NVIDIA "
                         "GPU, or re-estimate recorded samples with --samples") from None
    try:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(gpu)
    except pynvml.NVMLError as exc:
        raise InputError(f"no NVIDIA GPU {gpu} available ({exc})", "python -m llm_profile.power",
                         "run it on a machine with an NVIDIA GPU and driver, or re-estimate "
                         "recorded samples with --samples") from None
    return lambda: pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0  # mW -> W


def record(command: list[str], gpu: int, interval_s: float, idle_s: float,
           tail_s: float) -> list[Sample]:
    """Sample the GPU's power `idle_s` before, while `command` runs and `tail_s` after it."""
    read = _nvml_reader(gpu)
    samples: list[Sample] = []
    t0 = time.monotonic()

    def sample_until(phase: str, done) -> None:
        while not done():
            samples.append(Sample(time.monotonic() - t0, read(), phase))
            time.sleep(interval_s)

    sample_until("before", lambda: time.monotonic() - t0 >= idle_s)
    try:
        proc = subprocess.Popen(command)
    except OSError as exc:
        raise InputError(f"cannot start the command ({exc.strerror})", " ".join(command),
                         "check the command after --") from None
    sample_until("during", lambda: proc.poll() is not None)
    ended = time.monotonic()
    sample_until("after", lambda: time.monotonic() - ended >= tail_s)
    if proc.returncode != 0:
        print(f"warning: the command exited with status {proc.returncode}", file=sys.stderr)
    return samples


def build_parser() -> argparse.ArgumentParser:
    """Flags of `python -m llm_profile.power`."""
    p = OneLineParser(prog="python -m llm_profile.power", description=__doc__.split("\n\n")[0])
    p.add_argument("--hardware", required=True, help="name of the NPU entry (e.g. A6000)")
    p.add_argument("--gpu", type=integer, help="NVML device index (default 0)")
    p.add_argument("--interval", type=number, help="seconds between samples (default 0.05)")
    p.add_argument("--idle", type=number,
                   help="seconds sampled before the command (default 5)")
    p.add_argument("--tail", type=number,
                   help="seconds sampled after the command, must cover standby (default 30)")
    p.add_argument("--samples", type=path_arg, help="estimate from a recorded sample file instead")
    p.add_argument("--samples-output", type=file_arg, help="also write the samples (CSV)")
    p.add_argument("--output", type=file_arg, help="write the JSON here (default: stdout)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- the command to run")
    return p


def _write(path: Path, text: str) -> None:
    """Write an output file atomically; a path that cannot be written is an InputError."""
    try:
        write_atomic(path, text)
    except OSError as exc:
        raise InputError(f"cannot write the file ({exc.strerror})", str(path),
                         "choose a writable path") from None


def _check_outputs(output: Path | None, samples_output: Path | None,
                   samples: Path | None) -> None:
    """Outputs are files, distinct, and never the sample file read."""
    written = [(flag, p) for flag, p in (("--output", output),
                                          ("--samples-output", samples_output)) if p is not None]
    for flag, path in written:
        if path.is_dir():
            raise InputError(f"{flag} names a directory", f"{flag} {path}", "give a file path")
        if samples is not None and path.resolve() == samples.resolve():
            raise InputError(f"{flag} is the sample file read; writing it would destroy it",
                             f"{flag} {path}", "write the output elsewhere")
    if len(written) == 2 and output.resolve() == samples_output.resolve():
        raise InputError("two outputs would be written to the same file",
                         "--output / --samples-output", "give each a distinct path")


@guarded
def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    try:
        if not args.hardware.strip():
            raise InputError("--hardware is empty", "command line",
                             "name the NPU entry, e.g. --hardware A6000")
        _check_outputs(args.output, args.samples_output, args.samples)
        if args.samples is not None:
            given = [flag for key, (flag, _) in RECORDING.items()
                     if getattr(args, key) is not None] + (["a command"] if command else [])
            if given:
                raise InputError(f"{given[0]} has no effect with --samples (nothing is "
                                 "recorded)", "command line", f"drop {given[0]} or --samples")
            samples = read_samples(args.samples)
        else:
            for key, (_, default) in RECORDING.items():
                if getattr(args, key) is None:
                    setattr(args, key, default)
            if not command:
                raise InputError("no command given", "command line",
                                 "pass the workload after --, or --samples FILE")
            if not 0 <= args.gpu < MAX_GPUS:
                raise InputError(f"--gpu must be an NVML device index in 0..{MAX_GPUS - 1}, got "
                                 f"{args.gpu}", "command line", "pass the GPU's index, e.g. 0")
            for name, value in (("--interval", args.interval), ("--idle", args.idle),
                                ("--tail", args.tail)):
                if not 0 < value <= MAX_TIME_S:
                    raise InputError(f"{name} must be in (0, {MAX_TIME_S:g}] s, got {value}",
                                     name, "pass a number of seconds")
            samples = record(command, args.gpu, args.interval, args.idle, args.tail)
            if args.samples_output is not None:
                _write(args.samples_output, samples_csv(samples))
        where = str(args.samples) if args.samples is not None else "the recorded samples"
        text = json.dumps({"npu": {args.hardware: estimate(samples, where).entry()}},
                          indent=2) + "\n"
    except InputError as exc:
        print(exc.line(), file=sys.stderr)
        return 2
    if args.output is not None:
        try:
            _write(args.output, text)
        except InputError as exc:
            print(exc.line(), file=sys.stderr)
            return 2
    else:
        print(text, end="")
    print_flag_warnings(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
