"""Client for the casys ASTRA-Sim fork's long-running stdin/stdout protocol (engine.md §8.4).

The binary polls every finished start/end NPU each pass: it logs the NPU's report line, then a
line containing `Waiting`, and blocks reading exactly one line for that NPU: a workload prefix,
`pass`, `done` or `exit`.
"""

from __future__ import annotations

import queue
import re
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from astra_sim.binary import AstraBinary, kill, start

REPORT = re.compile(r"sys\[(\d+)\] iteration (\d+) finished, (\d+) cycles")
FINAL = "Checking Non-Exited Systems"


@dataclass(frozen=True, slots=True)
class Poll:
    """A finished NPU asking for work: its id, its finished iteration and the tick it ended."""

    npu: int
    iteration: int
    cycles: int


class CasysProcess:
    """A running casys AnalyticalAstra binary driven line by line."""

    def __init__(self, binary: AstraBinary, workload: Path, system: Path, memory: Path,
                 network: Path, start_npus: list[int], end_npus: list[int]) -> None:
        self.binary = binary
        command = [str(binary.path), f"--workload-configuration={workload}",
                   f"--system-configuration={system}", f"--memory-configuration={memory}",
                   f"--network-configuration={network}"]
        if start_npus:
            command.append("--start-npu-ids=" + "".join(f"{n}," for n in start_npus))
        if end_npus:
            command.append("--end-npu-ids=" + "".join(f"{n}," for n in end_npus))
        self.proc = start(command, stdin=subprocess.PIPE, bufsize=1)
        self.stderr: deque[str] = deque(maxlen=50)
        # Lines arrive through a queue so that a silent binary can be timed out; an undrained
        # stderr pipe could deadlock the binary.
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        for target in (self._read_stdout, self._drain_stderr):
            threading.Thread(target=target, daemon=True).start()

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _drain_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip())

    def _stdout_lines(self):
        """The binary's stdout lines until it closes it; TimeoutError once a step's wall time
        runs out."""
        deadline = time.monotonic() + self.binary.timeout_s
        while True:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                raise TimeoutError(self.binary.no_answer()) from None
            if line is None:
                return
            yield line

    def next_poll(self) -> Poll | None:
        """Read until the binary waits for a line; None once it reaches its final check."""
        last_report = None
        for line in self._stdout_lines():
            if FINAL in line:
                return None
            match = REPORT.search(line)
            if match:
                last_report = Poll(int(match.group(1)), int(match.group(2)),
                                   int(match.group(3)))
            elif "Waiting" in line:
                if last_report is None:
                    raise RuntimeError("the binary waits without a report line")
                return last_report
        said = " | ".join(self.stderr)
        raise RuntimeError("the ASTRA-Sim binary exited unexpectedly"
                           + (f": {said}" if said else " (nothing on stderr)"))

    def reply(self, line: str) -> None:
        """Send one line (prefix, `pass`, `done` or `exit`)."""
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def close(self, abort: bool = False) -> int:
        """Wait for the binary to exit (killed at once when `abort`, else after its step
        time); returns its status."""
        if not abort:
            try:
                self.proc.stdin.close()
                return self.proc.wait(timeout=self.binary.timeout_s)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                pass
        kill(self.proc)
        try:
            self.proc.stdin.close()
        except OSError:  # the line it never read cannot be flushed to a dead binary
            pass
        return self.proc.returncode
