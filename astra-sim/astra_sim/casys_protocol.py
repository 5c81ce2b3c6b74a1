"""Client for the casys ASTRA-Sim fork's long-running stdin/stdout protocol (engine.md §8.4).

The binary polls every finished start/end NPU each pass: it logs the NPU's report line, then a
line containing `Waiting`, and blocks reading exactly one line for that NPU: a workload prefix,
`pass`, `done` or `exit`.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

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

    def __init__(self, binary: Path, workload: Path, system: Path, memory: Path,
                 network: Path, start_npus: list[int], end_npus: list[int]) -> None:
        command = [str(binary), f"--workload-configuration={workload}",
                   f"--system-configuration={system}", f"--memory-configuration={memory}",
                   f"--network-configuration={network}"]
        if start_npus:
            command.append("--start-npu-ids=" + "".join(f"{n}," for n in start_npus))
        if end_npus:
            command.append("--end-npu-ids=" + "".join(f"{n}," for n in end_npus))
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, errors="replace",
                                     bufsize=1)
        self.stderr: deque[str] = deque(maxlen=50)
        # An undrained stderr pipe can deadlock the binary.
        self._drain = threading.Thread(target=self._drain_stderr, daemon=True)
        self._drain.start()

    def _drain_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip())

    def next_poll(self) -> Poll | None:
        """Read until the binary waits for a line; None once it reaches its final check."""
        last_report = None
        for line in self.proc.stdout:
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
        raise RuntimeError("the ASTRA-Sim binary exited unexpectedly: "
                           + " | ".join(self.stderr))

    def reply(self, line: str) -> None:
        """Send one line (prefix, `pass`, `done` or `exit`)."""
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def close(self) -> int:
        """Wait for the binary to exit (killed after 60 s); returns its status."""
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
