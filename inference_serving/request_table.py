"""A trace held as compact columns, sorted by arrival; requests are made as the run reaches them.

A million-request trace takes 32 bytes per request here instead of a live `Request` object
each; a `Request` exists only from its arrival until it finishes.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence

import numpy as np

from inference_serving.request import Request

CHUNK = 4096  # requests converted to Python ints at a time while iterating


class RequestTable:
    """Request ids, arrival times (ns), prompt and output token counts, in arrival order."""

    __slots__ = ("rid", "arrival", "prompt", "output", "token_ids")

    def __init__(self, rid: np.ndarray, arrival: np.ndarray, prompt: np.ndarray,
                 output: np.ndarray, token_ids: list[array | None] | None = None) -> None:
        self.rid = rid
        self.arrival = arrival
        self.prompt = prompt
        self.output = output
        self.token_ids = token_ids  # per request, with prefix caching only

    @classmethod
    def from_columns(cls, arrival: array, prompt: array, output: array,
                     token_ids: list[array | None] | None = None) -> tuple[RequestTable, bool]:
        """The table of requests given in trace order (ids = positions), stably sorted by
        arrival; also say whether the order changed."""
        times = np.frombuffer(arrival, dtype=np.int64)
        rid = np.arange(len(times), dtype=np.int64)
        columns = [rid, times, np.frombuffer(prompt, dtype=np.int64),
                   np.frombuffer(output, dtype=np.int64)]
        unsorted = bool(times.size > 1 and (times[1:] < times[:-1]).any())
        if unsorted:
            order = np.argsort(times, kind="stable")
            columns = [c[order] for c in columns]
            if token_ids is not None:
                token_ids = [token_ids[k] for k in order.tolist()]
        return cls(*columns, token_ids), unsorted

    @classmethod
    def of(cls, requests: Sequence[Request]) -> RequestTable:
        """The table of already sorted requests (their ids kept)."""
        return cls(*(np.fromiter((getattr(r, name) for r in requests), np.int64, len(requests))
                     for name in ("rid", "arrival", "prompt", "output")))

    def __len__(self) -> int:
        return len(self.arrival)

    def __iter__(self) -> Iterator[Request]:
        """Fresh requests in arrival order."""
        ids = self.token_ids
        for start in range(0, len(self), CHUNK):
            end = start + CHUNK
            for k, (rid, arrival, prompt, output) in enumerate(zip(
                    self.rid[start:end].tolist(), self.arrival[start:end].tolist(),
                    self.prompt[start:end].tolist(), self.output[start:end].tolist(),
                    strict=True), start=start):
                request = Request(rid=rid, arrival=arrival, prompt=prompt, output=output)
                if ids is not None:
                    request.token_ids = ids[k]
                yield request

    def first_longer_than(self, tokens: int) -> int | None:
        """Position of the first request whose prompt + output - 1 exceeds `tokens`."""
        over = np.flatnonzero(self.prompt + self.output - 1 > tokens)
        return int(over[0]) if over.size else None
