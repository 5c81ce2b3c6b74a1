"""argparse that reports bad arguments as one `error:` line with exit status 2."""

from __future__ import annotations

import argparse
import re
import sys

_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?(([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|inf|infinity|nan)",
                     re.IGNORECASE)


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors follow the project's one-line rule."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message}, command line, see '{self.prog} --help'", file=sys.stderr)
        raise SystemExit(2)


def integer(text: str) -> int:
    """An argparse type: a whole number in plain ASCII digits with an optional sign (Python's
    int() would also take `1_000`, spaces and non-ASCII digits)."""
    if not _INTEGER.fullmatch(text):
        raise argparse.ArgumentTypeError(f"invalid integer {text!r} (digits 0-9 with an optional "
                                         "sign)")
    return int(text)


def number(text: str) -> float:
    """An argparse type: a decimal number in plain ASCII (`2`, `-0.5`, `1e-3`, `inf`, `nan`;
    range checks come after), without the `1_000` and non-ASCII digits float() also takes."""
    if not _NUMBER.fullmatch(text):
        raise argparse.ArgumentTypeError(f"invalid number {text!r} (e.g. 2, 0.5 or 1e-3)")
    return float(text)
