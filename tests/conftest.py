"""Shared fixtures: paths to the repository and to the third-party data beside it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# LLMSIM_DATA points at the data from a checkout that does not sit beside it (a git worktree).
DATA = Path(os.environ.get("LLMSIM_DATA", REPO.parent / "shared" / "data"))
needs_data = pytest.mark.skipif(
    not DATA.is_dir(),
    reason="../shared/data not found: third-party LLMServingSim data is not available")


def pytest_configure(config: pytest.Config) -> None:
    """Register `slow` (tests that build and install the package; deselect with -m 'not slow')."""
    config.addinivalue_line("markers", "slow: builds and installs the package (seconds)")
