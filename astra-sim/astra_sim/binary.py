"""A user's ASTRA-Sim binary as a child process: its own process group, so that a binary that
stops answering (or a shell wrapper and everything it started) can be killed as a whole."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

# A real analytical ASTRA-Sim answers one iteration within about a second; half a minute of
# wall time without an answer means the binary hangs (--astra-sim-timeout changes it).
DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class AstraBinary:
    """An ASTRA-Sim executable and the wall seconds it may take to give one answer."""

    path: Path
    timeout_s: float = DEFAULT_TIMEOUT_S

    def no_answer(self) -> str:
        """The text of the error for a binary that exceeded its time."""
        return f"the ASTRA-Sim binary gave no answer within {self.timeout_s:g} s of wall time"


def start(command: list[str], stderr: int = subprocess.PIPE, **popen_args) -> subprocess.Popen:
    """Start `command` in a new process group with piped stdout (and stderr unless told)."""
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True,
                            errors="replace", start_new_session=True, **popen_args)


def kill(proc: subprocess.Popen) -> None:
    """Kill the process and everything in its group, then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # already gone, or its group changed hands
        proc.kill()
    proc.wait()
