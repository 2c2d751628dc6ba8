"""Statistics kept in bounded memory while values stream in: a job's settled tasks feed them.

* ``Reservoir``: a uniform sample of at most ``size`` numbers (Vitter's algorithm R) and its
  quantiles. Every number is kept while there are at most ``size`` of them, so a job of up to
  that many tasks has exact quantiles; above, each number has the same chance to be kept and
  a quantile's error shrinks with the square root of ``size`` (2,048: about ±2 percentile
  points at the median). Chosen over a mergeable sketch (KLL, t-digest) because it is exact
  where most jobs are, needs no tuning, and its values can be drawn (the plot's histogram);
  nothing merges samples of different jobs.
* ``PeakConcurrency``: the most intervals open at one moment, from intervals that arrive in
  any order (a task's started..finished arrives when it settles), in at most
  ``2 * keep_edges`` edges (``KEEP_EDGES``: 64 KB) while a job runs, and none once it ended.
"""

from __future__ import annotations

import random
from array import array

#: numbers a reservoir keeps (8 bytes each: 16 KB at most)
RESERVOIR_SIZE = 2048
#: interval edges a PeakConcurrency keeps unfolded (the latest by time)
KEEP_EDGES = 4096


class Reservoir:
    """A uniform sample of at most ``size`` numbers, exact while fewer were added."""

    __slots__ = ("size", "seen", "values", "_random", "_seed")

    def __init__(self, size: int = RESERVOIR_SIZE, seed: str = "") -> None:
        self.size = size
        self.seen = 0  # numbers added, kept or not
        self.values = array("d")
        self._seed = seed  # the same job draws the same sample every run
        self._random: random.Random | None = None  # made once the reservoir is full (2.5 KB)

    def add(self, value: float) -> None:
        self.seen += 1
        if len(self.values) < self.size:
            self.values.append(value)
            return
        if self._random is None:
            self._random = random.Random(self._seed)
        slot = self._random.randrange(self.seen)
        if slot < self.size:
            self.values[slot] = value

    @property
    def exact(self) -> bool:
        """Whether every number added is in the sample."""
        return self.seen == len(self.values)

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0..1) of the sample, interpolated between neighbours like
        ``statistics.quantiles(method="inclusive")`` (``q=0.5`` is ``statistics.median``);
        None when empty."""
        ordered = sorted(self.values)
        if not ordered:
            return None
        position = min(max(q, 0.0), 1.0) * (len(ordered) - 1)
        low = int(position)
        high = min(low + 1, len(ordered) - 1)
        fraction = position - low
        return ordered[low] + (ordered[high] - ordered[low]) * fraction if fraction else ordered[low]


class PeakConcurrency:
    """The most ``(start, end)`` intervals open at one moment.

    Edges wait in two arrays of floats (8 bytes each) until more than ``2 * keep_edges``
    wait; then the earliest are folded into a count (intervals open at the fold) and the
    peak before it, and ``close()`` folds them all once no interval will come. An interval
    that starts before the fold but arrives after it (a task that ran while more than
    ``keep_edges`` others ended) is counted from the fold on: the peak is exact unless such
    a task's overlap before the fold was the peak itself, and then it is low by one per
    such task.
    """

    __slots__ = ("keep_edges", "_starts", "_ends", "_folded_at", "_open_at_fold", "_folded_peak")

    def __init__(self, keep_edges: int = KEEP_EDGES) -> None:
        self.keep_edges = keep_edges
        self._starts = array("d")
        self._ends = array("d")
        self._folded_at: float | None = None
        self._open_at_fold = 0
        self._folded_peak = 0

    def add(self, start: float, end: float) -> None:
        folded_at = self._folded_at
        if folded_at is not None and start < folded_at:
            if end <= folded_at:
                return  # over before the fold: its overlap there is no longer known
            self._open_at_fold += 1
            self._folded_peak = max(self._folded_peak, self._open_at_fold)
        else:
            self._starts.append(start)
        self._ends.append(end)
        if len(self._starts) + len(self._ends) > 2 * self.keep_edges:
            self._fold(len(self._starts) + len(self._ends) - self.keep_edges)

    def close(self) -> None:
        """No interval will be added: keep only the peak."""
        self._fold(len(self._starts) + len(self._ends))

    def _edges(self) -> list[tuple[float, int]]:
        # At a tie, -1 sorts first: a task ending as another starts is not overlap.
        return sorted([(t, 1) for t in self._starts] + [(t, -1) for t in self._ends])

    def _fold(self, cut: int) -> None:
        edges = self._edges()
        running, peak = self._open_at_fold, self._folded_peak
        for _, step in edges[:cut]:
            running += step
            peak = max(peak, running)
        if cut:
            self._folded_at = edges[cut - 1][0]
        self._open_at_fold, self._folded_peak = running, peak
        rest = edges[cut:]
        self._starts = array("d", [t for t, step in rest if step > 0])
        self._ends = array("d", [t for t, step in rest if step < 0])

    def peak(self) -> int:
        running, peak = self._open_at_fold, self._folded_peak
        for _, step in self._edges():
            running += step
            peak = max(peak, running)
        return peak
