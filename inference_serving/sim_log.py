"""Diagnostic log lines on stderr, stamped with simulated time."""

from __future__ import annotations

import sys
from typing import TextIO

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30}


class SimLogger:
    """`[HH:MM:SS.mmm] [Component] [node=X,inst=Y] LEVEL message` lines at or above a level."""

    def __init__(self, level: str = "WARNING", stream: TextIO | None = None) -> None:
        self.threshold = LEVELS[level]
        self.stream = stream if stream is not None else sys.stderr
        self.now_ns = 0

    def enabled(self, level: str) -> bool:
        """True when messages of `level` are printed."""
        return LEVELS[level] >= self.threshold

    def log(self, level: str, component: str, message: str, node: int | None = None,
            inst: int | None = None) -> None:
        """Print one line if `level` passes the threshold."""
        if LEVELS[level] < self.threshold:
            return
        ms_total = self.now_ns // 1_000_000
        seconds, ms = divmod(ms_total, 1000)
        minutes, sec = divmod(seconds, 60)
        hours, minute = divmod(minutes, 60)
        where = ""
        if node is not None or inst is not None:
            where = f" [node={'-' if node is None else node},inst={'-' if inst is None else inst}]"
        print(f"[{hours:02d}:{minute:02d}:{sec:02d}.{ms:03d}] [{component}]{where} {level} "
              f"{message}", file=self.stream)

    def warning(self, component: str, message: str, **where: int) -> None:
        """Log at WARNING."""
        self.log("WARNING", component, message, **where)

    def info(self, component: str, message: str, **where: int) -> None:
        """Log at INFO."""
        self.log("INFO", component, message, **where)

    def debug(self, component: str, message: str, **where: int) -> None:
        """Log at DEBUG."""
        self.log("DEBUG", component, message, **where)
