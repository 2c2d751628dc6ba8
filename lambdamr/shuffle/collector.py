"""Pause Python's cyclic garbage collector while the shuffle builds many small objects.

Decoding a partition of 100,000 pairs allocates a tuple, a key, a value and a list per key:
hundreds of thousands of container objects, all alive until ``reduce_fn`` is done. The
collector counts allocations and, every 700 of them, walks the youngest generation (and
every few walks, the older ones, which hold everything decoded so far): work that grows with
the partition and can find nothing, because pairs of plain data form no cycles. It is
paused for the few places where the shuffle itself allocates in bulk (encoding a mapper's
partitions, decoding and grouping a reducer's): about 9% of a word-count reducer's CPU time in
this repository's A/B runs, less than the noise on the others (docs/benchmarks.md, "Shuffle
throughput"); the gain grows with the objects a worker already holds. Nothing is leaked: the
collector runs again on exit and finds any cycle made in between.

The pause is counted, so that tasks running on several threads of one process (the inline
backend) or nested pauses leave the collector as they found it once the last one ends.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_paused = 0  # pauses in progress in this process
_was_enabled = False  # the collector's state before the first of them


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run the block with the cyclic garbage collector off (reference counting still frees
    everything acyclic at once); restore its state when the last pause ends."""
    global _paused, _was_enabled
    with _lock:
        if _paused == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _paused += 1
    try:
        yield
    finally:
        with _lock:
            _paused -= 1
            if _paused == 0 and _was_enabled:
                gc.enable()
