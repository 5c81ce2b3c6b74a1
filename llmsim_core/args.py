"""argparse that reports bad arguments as one `error:` line with exit status 2."""

from __future__ import annotations

import argparse
import sys


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors follow the project's one-line rule."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message}, command line, see '{self.prog} --help'", file=sys.stderr)
        raise SystemExit(2)
