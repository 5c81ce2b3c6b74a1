"""Atomic file writes: a temp file beside the target, renamed over it when complete."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

# A temp name adds a dot, a random part and `.tmp` to the target's name; a target name near the
# file system's 255-byte limit is cut so the temp name still fits.
_NAME_KEEP = 200


def temp_prefix(path: Path) -> str:
    """The prefix of a temp file beside `path` (hidden, named after it, short enough)."""
    return f".{path.name[:_NAME_KEEP]}."


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write `text` (or raw bytes) to a temp file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") if isinstance(text, bytes) else \
                os.fdopen(fd, "w", newline="") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are ordinary shared files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_writer(path: Path) -> Iterator[TextIO]:
    """A text handle on a temp file beside `path`, renamed over `path` when the block ends
    without an exception (removed otherwise): for outputs too large to build in memory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            yield handle
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are ordinary shared files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
