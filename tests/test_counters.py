"""Counters: ``read`` gives the same numbers as ``snapshot``, in the order asked."""

from __future__ import annotations

from dataclasses import dataclass

from lambdamr.counters import Counters


@dataclass
class _Requests(Counters):
    puts: int = 0
    gets: int = 0
    lists: int = 0


def test_read_returns_the_named_counters_in_order():
    counters = _Requests()
    counters.add(puts=2, lists=5)
    assert counters.read(("lists", "puts")) == (5, 2)
    assert counters.read(("gets",)) == (0,)
    counters.add(gets=1)
    assert counters.read(("gets",)) == (1,)
    assert counters.read(("puts", "gets", "lists")) == tuple(counters.snapshot().values())
