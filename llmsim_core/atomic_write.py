"""Atomic file writes: a temp file beside the target, renamed over it when complete."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from llmsim_core.errors import InputError

# A temp name adds a dot, a random part and `.tmp` to the target's name; a target name near the
# file system's 255-byte limit is cut so the temp name still fits.
_NAME_KEEP = 200


def temp_prefix(path: Path) -> str:
    """The prefix of a temp file beside `path` (hidden, named after it, short enough)."""
    return f".{path.name[:_NAME_KEEP]}."


def refuse_non_file(path: Path) -> None:
    """An existing target that is not a regular file (a folder, or a device such as /dev/null,
    a FIFO or a socket, which the rename would replace) is an error."""
    if path.is_dir():
        raise InputError("the output names a folder, not a file", str(path),
                         "give a file path")
    if path.exists() and not path.is_file():
        raise InputError("the output names a device, FIFO or socket, not a regular file "
                         "(writing it would replace the node)", str(path),
                         "give a regular file path")


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write `text` (or raw bytes) to a temp file beside `path`, then rename it over `path`."""
    refuse_non_file(path)
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


def write_all_atomic(files: dict[Path, str | bytes]) -> None:
    """Write a set of files (each atomically) after checking every target and creating every
    folder first, so a bad path among them leaves none written."""
    for path in files:
        refuse_non_file(path)
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        write_atomic(path, text)


@contextmanager
def atomic_writer(path: Path) -> Iterator[TextIO]:
    """A text handle on a temp file beside `path`, renamed over `path` when the block ends
    without an exception (removed otherwise): for outputs too large to build in memory."""
    refuse_non_file(path)
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
