"""Where the repository's own data lives, and how user paths are resolved."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_CONFIG_DIR = REPO_ROOT / "model_config"
PERF_MODELS_DIR = REPO_ROOT / "llm_profile" / "perf_models"
DEFAULT_CLUSTER_CONFIG = Path("cluster_config/single_node_single_instance.json")


def resolve_user_path(raw: str) -> Path:
    """Resolve against the working directory; fall back to repository-relative paths.

    The existing simulator treated `/dataset/x.jsonl` as repository-relative; keep that working
    with a warning when the absolute path does not exist.
    """
    path = Path(raw)
    if path.exists():
        return path
    candidate = REPO_ROOT / raw.lstrip("/")
    if candidate.exists():
        if path.is_absolute():
            print(f"warning: {raw} does not exist; using {candidate}", file=sys.stderr)
        return candidate
    return path
