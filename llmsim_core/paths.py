"""Where the repository's own data lives, and how user paths are resolved."""

from __future__ import annotations

import sys
from pathlib import Path

# A checkout's root, or the site-packages directory of an installed copy.
REPO_ROOT = Path(__file__).resolve().parents[1]
# An installed copy ships model_config/, cluster_config/ and dataset/ in the llmservingsim_data
# folder beside its packages (see pyproject.toml); a checkout keeps them at the top level.
BUNDLED_ROOT = REPO_ROOT / "llmservingsim_data"
DATA_ROOT = BUNDLED_ROOT if BUNDLED_ROOT.is_dir() else REPO_ROOT
MODEL_CONFIG_DIR = DATA_ROOT / "model_config"
PIM_CONFIG_DIR = DATA_ROOT / "pim_config"
PERF_MODELS_DIR = REPO_ROOT / "llm_profile" / "perf_models"
DEFAULT_CLUSTER_CONFIG = Path("cluster_config/single_node_single_instance.json")


def resolve_user_path(raw: str) -> Path:
    """Resolve against the working directory; fall back to the simulator's own data.

    Relative names such as `cluster_config/x.json`, `dataset/x.jsonl` or `model_config` then
    work from any directory: in a checkout they name its files, in an installed copy the bundled
    ones. The existing simulator treated `/dataset/x.jsonl` as repository-relative; keep that
    working with a warning when the absolute path does not exist.
    """
    path = Path(raw)
    if path.exists():
        return path
    candidate = DATA_ROOT / raw.lstrip("/")
    if candidate.exists():
        if path.is_absolute():
            print(f"warning: {raw} does not exist; using {candidate}", file=sys.stderr)
        return candidate
    return path
