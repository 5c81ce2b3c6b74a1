"""Inter-token gaps of finished requests, pooled per instance and fleet-wide, in bounded memory.

Up to RAW_LIMIT gaps are kept verbatim, in completion order, and the statistics are numpy's on
that list. Past it, the gaps are folded into an exact histogram per instance: the distinct
values and how often each occurred. A gap is the time between two iterations that carry the
request, so a run has about as many distinct gaps as iterations, not as tokens. From the
histogram, percentiles are numpy's linear interpolation between the exact order statistics
(identical values), and the mean is the exact integer sum over the count (it can differ from
numpy's pairwise float sum in the last binary digit).

Fed per iteration as well (`produced`: the gaps an iteration sampled, the streaming decodes'
shared gap as one value and count), the histograms are built from the iterations instead of
the finished requests' lists; at the end of a run both hold the same gaps.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

RAW_LIMIT = 1 << 22  # 32 MiB of int64 gaps
FOLD_EVERY = 1 << 20  # gaps buffered per instance between folds once past RAW_LIMIT


@dataclass(slots=True)
class GapHistogram:
    """An exact multiset of integer gaps: sorted distinct values, their counts and sum."""

    values: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    counts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    total: int = 0  # exact sum (a Python int: it may exceed int64)

    @property
    def size(self) -> int:
        """Number of gaps."""
        return int(self.counts.sum())

    def add(self, samples: np.ndarray) -> None:
        """Fold `samples` (int64) in, FOLD_EVERY at a time (bounded temporaries)."""
        for start in range(0, samples.size, FOLD_EVERY):
            chunk = samples[start:start + FOLD_EVERY]
            self.total += exact_sum(chunk)
            self._merge(*np.unique(chunk, return_counts=True))

    def add_counted(self, values: np.ndarray, counts: np.ndarray) -> None:
        """Fold in `counts[i]` copies of each `values[i]` (int64 arrays)."""
        distinct, where = np.unique(values, return_inverse=True)
        summed = np.bincount(where, weights=counts, minlength=distinct.size)
        # Float weights are exact here: a count stays far below 2**53.
        merged = summed.astype(np.int64)
        if distinct.size and int(np.abs(distinct).max()) * int(merged.max()) < 1 << 62:
            self.total += exact_sum(distinct * merged)
        else:
            self.total += sum(int(v) * int(c)
                              for v, c in zip(distinct.tolist(), merged.tolist(), strict=True))
        self._merge(distinct, merged)

    def _merge(self, values: np.ndarray, counts: np.ndarray) -> None:
        """Fold in sorted distinct `values` with their `counts`: known values add up, new ones
        are inserted in place (temporaries of the new arrays' size, not the union's)."""
        at = np.searchsorted(self.values, values)
        known = at < self.values.size
        known[known] = self.values[at[known]] == values[known]
        if known.any():
            self.counts[at[known]] += counts[known]
        fresh = ~known
        if fresh.any():
            self.values = np.insert(self.values, at[fresh], values[fresh])
            self.counts = np.insert(self.counts, at[fresh], counts[fresh])

    def merged(self, other: GapHistogram) -> GapHistogram:
        """A new histogram holding both multisets."""
        out = GapHistogram(self.values, self.counts.copy(), self.total + other.total)
        out._merge(other.values, other.counts)
        return out

    def order_ms(self, rank: int, ends: np.ndarray) -> float:
        """The `rank`-th smallest gap (0-based) in ms; `ends` is the cumulative count."""
        return float(self.values[int(np.searchsorted(ends, rank, side="right"))]) / 1e6

    def percentile_ms(self, q: float) -> float:
        """numpy.percentile(gaps_ms, q) with its default linear interpolation."""
        ends = np.cumsum(self.counts)
        index = (int(ends[-1]) - 1) * (q / 100)
        below = math.floor(index)
        a = self.order_ms(below, ends)
        b = self.order_ms(min(below + 1, int(ends[-1]) - 1), ends)
        t = index - below
        diff = b - a
        return b - diff * (1 - t) if t >= 0.5 else a + diff * t

    def median_ms(self) -> float:
        """numpy.median(gaps_ms)."""
        ends = np.cumsum(self.counts)
        n = int(ends[-1])
        a = self.order_ms((n - 1) // 2, ends)
        return a if n % 2 else (a + self.order_ms(n // 2, ends)) / 2

    def mean_ms(self) -> float:
        """The exact mean in ms."""
        return self.total / self.size / 1e6


def exact_sum(samples: np.ndarray) -> int:
    """The exact sum of int64 `samples` (high and low 32-bit halves summed apart)."""
    return (int((samples >> 32).sum()) << 32) + int((samples & 0xFFFFFFFF).sum())


class GapLedger:
    """The gaps sampled on one instance, iteration by iteration, folded as they come."""

    def __init__(self) -> None:
        self.gaps = array("q")  # gaps sampled one by one
        self.shared = array("q")  # (gap, count) pairs of streaming decodes, flattened
        self.histogram = GapHistogram()

    def add(self, gaps: list[int], shared_gap: int, shared_count: int) -> None:
        """One iteration's gaps."""
        if gaps:
            self.gaps.extend(gaps)
            if len(self.gaps) > FOLD_EVERY:
                self._fold_gaps()
        if shared_count:
            self.shared.append(shared_gap)
            self.shared.append(shared_count)
            if len(self.shared) > FOLD_EVERY:
                self._fold_shared()

    def _fold_gaps(self) -> None:
        self.histogram.add(np.frombuffer(self.gaps, dtype=np.int64))
        self.gaps = array("q")

    def _fold_shared(self) -> None:
        pairs = np.frombuffer(self.shared, dtype=np.int64)
        self.histogram.add_counted(pairs[0::2], pairs[1::2])
        self.shared = array("q")

    def folded(self) -> GapHistogram:
        """Every gap so far."""
        if self.gaps:
            self._fold_gaps()
        if self.shared:
            self._fold_shared()
        return self.histogram


class GapSamples:
    """Every finished request's inter-token gaps, by the instance that finished it."""

    def __init__(self) -> None:
        self.raw = array("q")
        self.owners = array("h")  # instance of each request in `raw`, with its gap count
        self.lengths = array("q")
        self.folded: dict[int, GapHistogram] | None = None
        self.pending: dict[int, array] = {}
        self.ledgers: dict[int, GapLedger] | None = None  # set once fed per iteration

    def produced(self, instance: int, gaps: list[int], shared_gap: int,
                 shared_count: int) -> None:
        """Record the gaps one iteration of `instance` sampled: `gaps` one by one, and
        `shared_count` streaming decodes that all waited `shared_gap`."""
        if self.ledgers is None:
            self.ledgers = {}
        ledger = self.ledgers.get(instance)
        if ledger is None:
            ledger = self.ledgers[instance] = GapLedger()
        ledger.add(gaps, shared_gap, shared_count)

    def add(self, instance: int, gaps: Sequence[int]) -> None:
        """Record one finished request's gaps."""
        if self.folded is None:
            self.raw.extend(gaps)
            self.owners.append(instance)
            self.lengths.append(len(gaps))
            if len(self.raw) > RAW_LIMIT:
                self._fold_raw()
            return
        if self.ledgers is not None:
            return
        buffer = self.pending.get(instance)
        if buffer is None:
            buffer = self.pending[instance] = array("q")
        buffer.extend(gaps)
        if len(buffer) > FOLD_EVERY:
            self._fold(instance)

    def _fold_raw(self) -> None:
        if self.ledgers is not None:
            # Past the raw bound the iterations' record is the one used: no per-request work.
            self.folded = {}
            self.raw, self.owners, self.lengths = array("q"), array("h"), array("q")
            return
        samples = np.frombuffer(self.raw, dtype=np.int64)
        owner = np.repeat(np.frombuffer(self.owners, dtype=np.int16),
                          np.frombuffer(self.lengths, dtype=np.int64))
        self.folded = {}
        for index in np.unique(owner).tolist():
            self.folded[index] = GapHistogram()
            self.folded[index].add(samples[owner == index])
        self.raw, self.owners, self.lengths = array("q"), array("h"), array("q")

    def _fold(self, instance: int) -> None:
        assert self.folded is not None
        histogram = self.folded.setdefault(instance, GapHistogram())
        histogram.add(np.frombuffer(self.pending.pop(instance), dtype=np.int64))

    def _histograms(self) -> dict[int, GapHistogram]:
        assert self.folded is not None
        if self.ledgers is not None:
            return {index: ledger.folded() for index, ledger in sorted(self.ledgers.items())}
        for instance in list(self.pending):
            self._fold(instance)
        return self.folded

    def instance_ms(self, instance: int) -> tuple[float, float, float] | None:
        """(mean, median, P99) in ms of the gaps of requests finished on `instance`."""
        if self.folded is None:
            owner = np.repeat(np.frombuffer(self.owners, dtype=np.int16),
                              np.frombuffer(self.lengths, dtype=np.int64))
            ms = np.frombuffer(self.raw, dtype=np.int64)[owner == instance].astype(np.float64)
            if not ms.size:
                return None
            ms /= 1e6
            return float(ms.mean()), float(np.median(ms)), float(np.percentile(ms, 99))
        histogram = self._histograms().get(instance)
        if histogram is None or not histogram.size:
            return None
        return histogram.mean_ms(), histogram.median_ms(), histogram.percentile_ms(99)

    def fleet_ms(self, percentiles: tuple[int, ...]) -> tuple[float, list[float]] | None:
        """(mean, the given percentiles) in ms over every gap."""
        if self.folded is None:
            if not self.raw:
                return None
            ms = np.frombuffer(self.raw, dtype=np.int64).astype(np.float64) / 1e6
            return float(ms.mean()), [float(np.percentile(ms, q)) for q in percentiles]
        histograms = list(self._histograms().values())
        pooled = histograms[0]
        for other in histograms[1:]:
            pooled = pooled.merged(other)
        if not pooled.size:
            return None
        return pooled.mean_ms(), [pooled.percentile_ms(q) for q in percentiles]
