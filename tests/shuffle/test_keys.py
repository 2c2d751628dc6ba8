"""map_reduce keys that compare equal meet in one reducer; keys that cannot be grouped, and
reducers that would receive nothing, are dealt with before they cost a task."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

from lambdamr import ConfigurationError, LambdaExecutor
from lambdamr.shuffle.partition import canonical_bytes, stable_partition


@pytest.fixture(scope="module")
def ex(tmp_path_factory):
    with LambdaExecutor(storage=str(tmp_path_factory.mktemp("store")), workers=2, progress=False) as executor:
        yield executor


@pytest.mark.parametrize(
    "equal",
    [
        (1, 1.0, True, Decimal(1), Decimal("1.00"), Fraction(2, 2), np.int64(1), np.float32(1.0)),
        (0.5, Decimal("0.5"), Fraction(1, 2), np.float64(0.5)),
        (Decimal("0.1"), Decimal("0.10")),
        (float("inf"), Decimal("Infinity"), np.float64("inf")),
    ],
    ids=["one", "a half", "decimal tenth", "infinity"],
)
def test_equal_numbers_of_any_type_encode_equally(equal):
    assert len({canonical_bytes(k) for k in equal}) == 1
    assert len({stable_partition(k, 97) for k in equal}) == 1


def test_unequal_numbers_that_round_to_one_float_stay_apart():
    assert canonical_bytes(Decimal("0.1")) != canonical_bytes(0.1)  # Decimal("0.1") != 0.1
    assert canonical_bytes(Fraction(1, 3)) != canonical_bytes(1 / 3)


def decimal_or_int(i):
    return [(Decimal(i % 3) if i % 2 else i % 3, 1)]


def count(key, values):
    return sum(values)


@pytest.mark.parametrize("budget_mb", [None, 0.0001], ids=["in memory", "spill to disk"])
@pytest.mark.parametrize("reducers", [1, 4])
def test_decimal_and_int_keys_that_are_equal_meet_in_one_reducer(ex, reducers, budget_mb):
    result = ex.map_reduce(decimal_or_int, range(30), count, reducers=reducers, reduce_budget_mb=budget_mb)
    assert dict(result) == {0: 10, 1: 10, 2: 10}


def nan_key(i):
    return [(float("nan") if i == 3 else i % 2, i)]


def nan_routed_by_user(key, reducers):
    return 0


@pytest.mark.parametrize("budget_mb", [None, 0.0001], ids=["in memory", "spill to disk"])
@pytest.mark.parametrize("partition", [None, nan_routed_by_user], ids=["default partition", "custom partition"])
def test_nan_keys_are_refused_with_what_to_do(ex, budget_mb, partition):
    with pytest.raises(ConfigurationError, match=r"key nan, which is not equal to itself.*None or a string"):
        ex.map_reduce(nan_key, range(8), count, reducers=1, reduce_budget_mb=budget_mb, partition=partition,
                      retries=0)


def three_keys(i):
    return [(i % 3, 1)]


def test_reducers_that_receive_nothing_are_not_invoked(ex):
    result = ex.map_reduce(three_keys, range(12), count, reducers=500)
    assert dict(result) == {0: 4, 1: 4, 2: 4}
    # 12 map tasks, then one reduce task per reducer that received a key: at most 3 of 500
    assert sum(len(job.tasks) for job in result.jobs) == 12 + len({stable_partition(k, 500) for k in range(3)})


def test_empty_reducers_write_no_output_part(ex, tmp_path):
    out = tmp_path / "out"
    result = ex.map_reduce(three_keys, range(12), count, reducers=200, output=str(out), output_format="text")
    assert len(result.output_keys) == len({stable_partition(k, 200) for k in range(3)}) <= 3
    lines = sorted(line for p in out.iterdir() for line in p.read_text().splitlines())
    assert len(lines) == 3
