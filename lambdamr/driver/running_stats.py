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

import math
import random
from array import array
from bisect import bisect_right

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
        slot = int(self._random.random() * self.seen)  # randrange's draw, without its Python layers
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

    def _walk(self, cut: int | None = None) -> tuple[int, int, list[float], list[float], int, int]:
        """Walk the first ``cut`` edges (default: all) in time order, an end before a start at
        the same moment (a task ending as another starts is not overlap): the intervals open
        and the peak after them, the sorted edges and how many of each were walked. Each side
        sorted on its own (floats, in C), not as a list of (time, step) pairs."""
        starts, ends = sorted(self._starts), sorted(self._ends)
        running, peak = self._open_at_fold, self._folded_peak
        if cut is None:
            # The peak is at a start: those open then are the starts so far less the ends up to it.
            if starts:
                peak = max(peak, running + max(k - bisect_right(ends, t) for k, t in enumerate(starts, 1)))
            return running + len(starts) - len(ends), peak, starts, ends, len(starts), len(ends)
        i = j = 0
        n_starts, n_ends = len(starts), len(ends)
        for _ in range(cut):
            if i < n_starts and (j >= n_ends or starts[i] < ends[j]):
                i += 1
                running += 1
                if running > peak:
                    peak = running
            else:
                j += 1
                running -= 1
        return running, peak, starts, ends, i, j

    def _fold(self, cut: int) -> None:
        running, peak, starts, ends, i, j = self._walk(cut)
        if i or j:
            last_start = starts[i - 1] if i else -math.inf
            last_end = ends[j - 1] if j else -math.inf
            self._folded_at = max(last_start, last_end)
        self._open_at_fold, self._folded_peak = running, peak
        self._starts = array("d", starts[i:])
        self._ends = array("d", ends[j:])

    def peak(self) -> int:
        return self._walk()[1]
