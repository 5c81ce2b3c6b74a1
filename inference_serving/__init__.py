"""Serving layer: config, router, scheduler, KV cache, iteration timing, metrics.

`from inference_serving import simulate` runs one simulation from Python.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inference_serving.api import Results


def simulate(*args: Any, **kwargs: Any) -> Results:
    """See `inference_serving.api.simulate` (imported on first use to keep start-up light)."""
    from inference_serving.api import simulate as run

    return run(*args, **kwargs)
