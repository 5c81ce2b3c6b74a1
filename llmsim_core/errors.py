"""The one exception type for bad user input, rendered as a single `error:` line."""

from __future__ import annotations


class InputError(Exception):
    """Bad user input: `what` went wrong, `where` (file, key, flag), `fix` (what to do)."""

    def __init__(self, what: str, where: str, fix: str) -> None:
        super().__init__(f"{what}, {where}, {fix}")
        self.what = what
        self.where = where
        self.fix = fix

    def line(self) -> str:
        """The one-line message printed to stderr."""
        return f"error: {self}"
