"""The exceptions the command edge reports: bad user input (`InputError`, rendered as a single
`error:` line) and a real interrupt (`StopSignal`)."""

from __future__ import annotations

import re

# Control characters from a hostile file or path (NUL, ESC, newline) are shown escaped, so the
# message stays one line and cannot drive the terminal.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InputError(Exception):
    """Bad user input: `what` went wrong, `where` (file, key, flag), `fix` (what to do)."""

    def __init__(self, what: str, where: str, fix: str) -> None:
        super().__init__(f"{what}, {where}, {fix}")
        self.what = what
        self.where = where
        self.fix = fix

    def line(self) -> str:
        """The one-line message printed to stderr."""
        return "error: " + _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(self))


class StopSignal(KeyboardInterrupt):
    """The interrupt of a real Ctrl-C or termination signal (`args[0]` is its number); user
    code that raises KeyboardInterrupt itself raises the base class, which is that code's
    failure (llmsim_core.plugins)."""
