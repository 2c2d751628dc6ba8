"""What cannot be shipped is refused at submit, naming it; what ships by value does. (What
breaks once a task runs — exceptions, results and arguments that fail to cross, lost workers,
timeouts, memory, tampered objects, missing imports — is the crash table of
tests/contract/test_deadlock.py, run on every backend.)"""

from __future__ import annotations

import socket
import sys
import textwrap
import threading

import pytest

from lambdamr import SerializationError


def divide(a, b):
    return a / b


def test_unpicklable_argument_fails_at_submit_naming_it(executor):
    lock = threading.Lock()
    with pytest.raises(SerializationError, match=r"arguments of call 0.*\[0\] -> \[0\].*lock"):
        executor.submit(divide, lock, 1)
    assert executor.jobs == []  # nothing was launched


def test_unpicklable_closure_variable_fails_at_submit_naming_it(executor):
    connection = socket.socket()
    try:
        def sends():
            return connection.send(b"x")

        with pytest.raises(SerializationError, match=r"closure variable 'connection'.*socket"):
            executor.submit(sends)
    finally:
        connection.close()


def test_unpicklable_generator_argument_in_map_names_the_item(executor):
    items = [1, 2, (x for x in range(3))]
    with pytest.raises(SerializationError, match=r"arguments of call 2.*generator"):
        executor.map(lambda x: x, items)


def test_function_from_a_local_module_ships_by_value(executor, tmp_path, monkeypatch):
    module_dir = tmp_path / "userpkg"
    module_dir.mkdir()
    (module_dir / "my_local_helpers.py").write_text(
        textwrap.dedent(
            """
            FACTOR = 3

            def triple(x):
                return x * FACTOR
            """
        )
    )
    monkeypatch.syspath_prepend(str(module_dir))
    import my_local_helpers  # noqa: F401 - importable here only, not in the workers

    try:
        assert list(executor.map(my_local_helpers.triple, [1, 2])) == [3, 6]
    finally:
        sys.modules.pop("my_local_helpers", None)


# ---- the plain-data fast path: the stdlib pickler, the same bytes --------------------------
class _Number(int):
    """An int subclass: it pickles by reference to its class, so it is not plain data."""


@pytest.mark.parametrize("value", [
    0, -3, 2**100, 1.5, float("inf"), 1 + 2j, "text", "ünï", b"\x00\xff", True, None,
    [((1,), {})], [(("a", 2.0), {"key": [1, 2, {"x": None}]})], (), [], {},
    {1: "a", "b": (b"c",)}, [(("same",) * 3, {})],
])
def test_plain_data_pickles_to_the_bytes_cloudpickle_writes(value):
    from lambdamr import serialize

    assert serialize.is_plain(value)
    for ship in (True, False):
        data = serialize.dumps(value, ship_local_modules=ship)
        assert data == cloudpickle_bytes(value)
        assert serialize.loads(data) == value


@pytest.mark.parametrize("value", [
    _Number(3), [_Number(3)], {1, 2}, bytearray(b"x"), [((1,), {"f": divide})],
    list(range(300)), {"k": list(range(300))}, [[[[list(range(100))] * 3]]],
])
def test_anything_else_is_not_plain_and_goes_through_cloudpickle(value):
    from lambdamr import serialize

    assert not serialize.is_plain(value)
    copy = serialize.loads(serialize.dumps(value))
    if isinstance(value, list) and value and isinstance(value[0], tuple):  # a function inside: by value
        assert copy[0][1]["f"](6, 3) == 2
    else:
        assert copy == value and type(copy) is type(value)


def test_a_plain_cycle_is_not_walked_forever():
    from lambdamr import serialize

    looped: list = [1]
    looped.append(looped)
    assert not serialize.is_plain(looped)  # the walk stops at its item budget
    copy = serialize.loads(serialize.dumps(looped))
    assert copy[1] is copy


def cloudpickle_bytes(value):
    import cloudpickle

    return cloudpickle.dumps(value, protocol=5)
