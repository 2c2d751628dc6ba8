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
