"""``map(..., unpack=...)``: dicts of keyword arguments (and tuples of positional ones) as items.

The checks run where ``map`` reads its input (driver/inputs.py); the behaviour runs on every
backend × storage (tests/targets.py), the AWS stand-in included.
"""

from __future__ import annotations

import types

import pytest

from lambdamr.driver.inputs import calls_in_chunks, check_unpack, unpacked_calls
from lambdamr.errors import ConfigurationError

WAIT_S = 60


def scaled(x, y=1, *, offset=0):
    return x * y + offset


def anything(**values):
    return sorted(values.items())


# ---- the checks, as items are read --------------------------------------------------------------
def test_a_dict_item_becomes_keyword_arguments_and_a_tuple_positional_ones():
    calls = list(unpacked_calls([{"x": 2, "y": 3}, types.MappingProxyType({"x": 1, "offset": 5})], "kwargs", scaled))
    assert calls == [((), {"x": 2, "y": 3}), ((), {"x": 1, "offset": 5})]
    assert list(unpacked_calls([(2, 3), [4]], "args", scaled)) == [((2, 3), {}), ((4,), {})]
    assert [len(c) for c in calls_in_chunks(iter(calls * 3), 4)] == [4, 2]


@pytest.mark.parametrize(
    "unpack, item, fragment",
    [
        ("kwargs", [1, 2], "item 1 is a list ([1, 2]), not a dict of keyword arguments"),
        ("kwargs", {"x": 1, "not valid": 2}, "item 1 has the key 'not valid', which is not a Python identifier"),
        ("kwargs", {"x": 1, 3: 2}, "item 1 has the key 3, which is not a Python identifier"),
        ("kwargs", {"x": 1, "z": 2}, "does not fit scaled(x, y=1, *, offset=0): got an unexpected keyword argument 'z'"),
        ("kwargs", {"y": 2}, "missing a required argument: 'x'"),
        ("args", "ab", "item 1 is a str ('ab'), not a tuple or list of positional arguments"),
        ("args", {"x": 1}, "item 1 is a dict"),
        ("args", (1, 2, 3), "too many positional arguments"),
    ],
)
def test_a_bad_item_is_refused_naming_its_position_and_what_to_do(unpack, item, fragment):
    good = {"x": 1} if unpack == "kwargs" else (1,)
    calls = unpacked_calls([good, item, good], unpack, scaled)
    assert next(calls) is not None  # the items before it are fine
    with pytest.raises(ConfigurationError) as caught:
        next(calls)
    assert fragment in str(caught.value)


def test_any_identifier_fits_a_function_of_kwargs_and_an_unknown_signature_is_not_checked():
    assert list(unpacked_calls([{"a": 1, "class_": 2}], "kwargs", anything)) == [((), {"a": 1, "class_": 2})]
    assert list(unpacked_calls([(3, 1, 2)], "args", max)) == [((3, 1, 2), {})]  # max has no signature to check


def test_the_option_and_its_iterables_are_checked():
    check_unpack(None, ([1], [2]))
    with pytest.raises(ConfigurationError, match="give 'kwargs'.*'args'.*or None"):
        check_unpack("dict", ([1],))
    with pytest.raises(ConfigurationError, match="takes one iterable of items, got 2"):
        check_unpack("kwargs", ([{}], [{}]))


# ---- on every target -------------------------------------------------------------------------
def test_map_calls_fn_with_each_dict_as_keyword_arguments(target_executor):
    items = [{"x": i, "y": 2, "offset": i % 3} for i in range(7)]
    assert list(target_executor.map(scaled, items, unpack="kwargs", chunksize=3)) == [scaled(**d) for d in items]
    assert target_executor.last_job.tasks[0].calls == 3  # chunksize: three calls a task
    assert list(target_executor.map(scaled, [(i, 3) for i in range(4)], unpack="args")) == [0, 3, 6, 9]
    assert list(target_executor.map(len, [{"a": 1, "b": 2}])) == [2]  # without unpack a dict is one argument


def test_a_bad_item_in_the_first_window_is_refused_before_anything_launches(target_executor):
    before = len(target_executor.jobs)
    with pytest.raises(ConfigurationError, match="item 2 .* unexpected keyword argument 'why'"):
        target_executor.map(scaled, [{"x": 1}, {"x": 2}, {"x": 3, "why": 0}], unpack="kwargs")
    with pytest.raises(ConfigurationError, match="takes one iterable"):
        target_executor.map(scaled, [{"x": 1}], [{"y": 1}], unpack="kwargs")
    assert len(target_executor.jobs) == before


def test_a_bad_item_further_on_is_raised_after_the_results_before_it(target_executor):
    items = ({"x": i} if i != 9 else {"x": i, "z": 1} for i in range(20))  # a generator: read as results flow
    results = target_executor.map(scaled, items, unpack="kwargs", buffersize=2)
    got = []
    with pytest.raises(ConfigurationError, match="item 9"):
        for value in results:
            got.append(value)
    assert got == list(range(9))
