"""Chained block hashes over token ids (vLLM's prefix-cache keys).

A block's key is the hash of its parent's key and its own token ids, so equal keys mean equal
whole prefixes, never just equal blocks. Python's hash of a tuple of ints does not depend on
PYTHONHASHSEED, so the keys (and every output) are deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

ROOT = 0  # the parent key of a sequence's first block


def extend_hashes(hashes: list[int], ids: Sequence[int], block_size: int, tokens: int) -> None:
    """Append the keys of the full blocks of `ids[:tokens]` that `hashes` does not hold yet."""
    full = min(tokens, len(ids)) // block_size
    parent = hashes[-1] if hashes else ROOT
    for index in range(len(hashes), full):
        start = index * block_size
        parent = hash((parent, tuple(ids[start:start + block_size])))
        hashes.append(parent)


def chunk_keys(hashes: Sequence[int], chunk_blocks: int) -> list[int]:
    """Keys of whole chunks of `chunk_blocks` blocks: every chunk_blocks-th block key."""
    return list(hashes[chunk_blocks - 1::chunk_blocks])
