"""What breaks, where, and what the user sees: the crash matrix of a task's failures."""

from __future__ import annotations

import socket
import sys
import textwrap
import threading
import traceback

import pytest

from lambdamr import RemoteError, SerializationError


class NeedsTwoArgs(Exception):
    """Pickles fine but cannot be unpickled: __init__ wants two arguments, args holds one."""

    def __init__(self, a, b):
        super().__init__(f"{a}-{b}")


class HoldsALock(Exception):
    def __init__(self):
        super().__init__("with a lock inside")
        self.lock = threading.Lock()


def divide(a, b):
    return a / b


def raise_needs_two(_):
    raise NeedsTwoArgs(1, 2)


def raise_holds_lock(_):
    raise HoldsALock()


def return_a_lock(_):
    return threading.Lock()


def test_user_exception_is_reraised_as_itself_with_the_remote_frame(executor):
    future = executor.submit(divide, 1, 0)
    with pytest.raises(ZeroDivisionError) as info:
        future.result(timeout=30)
    frames = traceback.extract_tb(info.value.__traceback__)
    # The last frame is the line of the user's function that raised, in the user's file.
    assert frames[-1].name == "divide"
    assert frames[-1].filename == __file__
    assert frames[-1].line == "return a / b"
    assert any("raised remotely in task 0" in note for note in getattr(info.value, "__notes__", []))


@pytest.mark.parametrize(
    "fn, remote_type, fragment",
    [
        (raise_needs_two, "NeedsTwoArgs", "1-2"),
        (raise_holds_lock, "HoldsALock", "with a lock inside"),
    ],
)
def test_exception_that_cannot_cross_arrives_as_remote_error(executor, fn, remote_type, fragment):
    future = executor.submit(fn, None)
    error = future.exception(timeout=30)
    assert isinstance(error, RemoteError)
    assert remote_type in error.remote_type
    assert fragment in str(error)
    assert f"in {fn.__name__}" in error.remote_traceback  # the remote traceback names the function
    assert error.task_id == 0 and error.attempt == 1


def test_result_that_cannot_be_pickled_fails_with_a_clear_error(executor):
    error = executor.submit(return_a_lock, None).exception(timeout=30)
    assert isinstance(error, SerializationError)
    assert "return value to the driver" in str(error) and "_thread.lock" in str(error)


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


def test_missing_module_on_the_remote_side_says_what_to_install(executor):
    # An installed package the runtime lacks (as a package missing from the Lambda layer):
    # a module without a source file is pickled by reference, and the worker cannot import it.
    fake = type(sys)("lambdamr_not_installed_pkg")

    class Thing:
        pass

    Thing.__module__, Thing.__qualname__ = fake.__name__, "Thing"
    fake.Thing = Thing
    sys.modules[fake.__name__] = fake
    try:
        error = executor.submit(lambda v: v, Thing()).exception(timeout=30)
    finally:
        del sys.modules[fake.__name__]
    assert isinstance(error, SerializationError)
    assert "lambdamr_not_installed_pkg" in str(error)
    assert "runtime layer" in str(error)
