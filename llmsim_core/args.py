"""argparse that reports bad arguments as one `error:` line with exit status 2."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?(([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|inf|infinity|nan)",
                     re.IGNORECASE)


class _GivenValues(argparse.Namespace):
    """Parsed flags that also keep every value given to each flag on the command line."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__()
        object.__setattr__(self, "_given", {})
        # argparse ends a parse by setting each string default that was not given to its
        # converted value (`type` applied): that setting is not a flag given.
        converted: dict[str, tuple[str, object]] = {}
        object.__setattr__(self, "_converted", converted)
        # Defaults set here are not recorded: argparse only sets the attributes still missing.
        for action in parser._actions:
            if action.dest is not argparse.SUPPRESS and action.default is not argparse.SUPPRESS:
                object.__setattr__(self, action.dest, action.default)
                if isinstance(action.default, str):
                    try:
                        converted[action.dest] = (action.default,
                                                  parser._get_value(action, action.default))
                    except (argparse.ArgumentError, TypeError, ValueError):
                        pass  # argparse reports a default its type refuses

    def __setattr__(self, name: str, value: object) -> None:
        default = self._converted.get(name)
        if default is None or getattr(self, name) is not default[0] or value != default[1]:
            self._given.setdefault(name, []).append(value)
        super().__setattr__(name, value)


def was_given(args: argparse.Namespace, dest: str) -> bool:
    """Whether the flag stored in `dest` was given on the command line (not its default)."""
    return dest in getattr(args, "_given", {})


def repeated_flag_warnings(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """One `warning:` line per flag given more than once with different values (argparse keeps
    the last one without a word)."""
    given = getattr(args, "_given", {})
    lines = []
    for action in parser._actions:
        values = given.get(action.dest, [])
        if len(values) > 1 and any(v != values[-1] for v in values):
            flag = max(action.option_strings, key=len, default=action.dest)
            shown = ", ".join(str(v) for v in values)
            lines.append(f"warning: {flag} given {len(values)} times ({shown}); the last, "
                         f"{values[-1]}, is used")
    return lines


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors follow the project's one-line rule and that notes each
    flag given twice with different values (see `print_flag_warnings`)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message}, command line, see '{self.prog} --help'", file=sys.stderr)
        raise SystemExit(2)

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        """argparse's parse; the repeated flags' warnings wait in the result, printed when the
        command has succeeded (a failed one ends with its one `error:` line alone)."""
        parsed, extra = super().parse_known_args(args, namespace or _GivenValues(self))
        object.__setattr__(parsed, "_warnings", repeated_flag_warnings(self, parsed))
        return parsed, extra


def print_flag_warnings(args: argparse.Namespace) -> None:
    """Print the `warning:` lines about repeated flags of a parse by `OneLineParser` to stderr
    (once the command has succeeded)."""
    for line in getattr(args, "_warnings", ()):
        print(line, file=sys.stderr)


def path_arg(text: str) -> Path:
    """An argparse type: a file or folder path (an empty one, which Path() reads as the
    working directory, is an error)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path")
    return Path(text)


def names_a_folder(text: str) -> bool:
    """True for a path written with a trailing separator (`out.csv/`): it names a folder, and
    Path() would silently drop the separator."""
    return text.endswith(tuple(sep for sep in (os.sep, os.altsep) if sep))


def file_arg(text: str) -> Path:
    """An argparse type: a path to an output file (not empty, no trailing separator)."""
    path = path_arg(text)
    if names_a_folder(text):
        raise argparse.ArgumentTypeError(f"{text!r} ends in a separator, which names a folder "
                                         "(give a file path)")
    return path


def integer(text: str) -> int:
    """An argparse type: a whole number in plain ASCII digits with an optional sign (Python's
    int() would also take `1_000`, spaces and non-ASCII digits)."""
    if not _INTEGER.fullmatch(text):
        raise argparse.ArgumentTypeError(f"invalid integer {text!r} (digits 0-9 with an optional "
                                         "sign)")
    if len(text) > 40:  # beyond every range checked later; int() refuses 4300+ digits
        raise argparse.ArgumentTypeError(f"integer {text[:20]}... has {len(text)} digits, far "
                                         "beyond any range")
    return int(text)


def number(text: str) -> float:
    """An argparse type: a decimal number in plain ASCII (`2`, `-0.5`, `1e-3`, `inf`, `nan`;
    range checks come after), without the `1_000` and non-ASCII digits float() also takes."""
    if not _NUMBER.fullmatch(text):
        raise argparse.ArgumentTypeError(f"invalid number {text!r} (e.g. 2, 0.5 or 1e-3)")
    return float(text)
