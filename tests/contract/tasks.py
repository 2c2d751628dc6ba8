"""Functions the contract tests run as tasks (importable by name, for ProcessPoolExecutor)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def mul(x, y):
    return x * y


def add_keywords(a, *, b=0):
    return a + b


def capture(*args, **kwargs):
    return args, kwargs


def sleep_and_return(seconds, value=None):
    time.sleep(seconds)
    return value


def sleep_and_raise(seconds):
    time.sleep(seconds)
    raise RuntimeError(f"failed after {seconds} s")


def raise_value_error(message="boom"):
    raise ValueError(message)


def wait_for_file(path, seconds=30.0):
    """Block until ``path`` exists (the test's signal to go on), then return its text."""
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.005)
    return Path(path).read_text()


def touch_then_wait(started, release, value=None):
    """Say it started (a marker file), then wait for the test to release it."""
    Path(started).write_text(str(os.getpid()))
    wait_for_file(release)
    return value


def write_after(seconds, path, text):
    time.sleep(seconds)
    Path(path).write_text(text)
    return text


def exit_with(code):
    sys.exit(code)


def raise_keyboard_interrupt():
    raise KeyboardInterrupt


def raise_base_exception():
    raise GeneratorExit("a BaseException that is not an Exception")


def hard_exit():
    os._exit(1)


def kill_own_process():
    os.kill(os.getpid(), signal.SIGKILL)


def identity(x):
    return x


class Dummy:
    """A result that can be weak-referenced once it is back in the driver."""

    def __init__(self, value):
        self.value = value


def make_dummy(value):
    return Dummy(value)


class StaleCheck:
    """An object whose bound method runs as a task (CPython's test_no_stale_references)."""

    def method(self):
        return 1


# ---- what breaks where (the deadlock matrix) -----------------------------------------------
class ExitOnUnpickle:
    """Unpickling it calls sys.exit (a ``__reduce__`` that runs on the receiving side)."""

    def __reduce__(self):
        return (sys.exit, (7,))


class ErrorOnUnpickle:
    def __reduce__(self):
        return (_raise_on_load, ())


class ExitOnPickle:
    def __reduce__(self):
        sys.exit(8)


class ErrorOnPickle:
    def __reduce__(self):
        raise RuntimeError("cannot pickle this")


class CrashOnUnpickle:
    def __reduce__(self):
        return (os._exit, (9,))


def _raise_on_load():
    raise RuntimeError("cannot unpickle this")


BREAKING_RESULTS = {cls.__name__: cls for cls in (ExitOnUnpickle, ErrorOnUnpickle, ExitOnPickle, ErrorOnPickle)}


def return_it(obj_class_name):
    """Return an instance of the named class (built where the task runs)."""
    return BREAKING_RESULTS[obj_class_name]()


def ignore(obj):
    return None


def set_env_initializer(name, value, log_dir):
    os.environ[name] = value
    Path(log_dir, f"init-{os.getpid()}-{time.monotonic_ns()}").write_text(value)


def read_env(name):
    return os.environ.get(name), os.getpid()


def failing_initializer():
    raise RuntimeError("initializer failed on purpose")


def touch_sleep_write(started, seconds, out):
    """Say it started, then finish a little later: a call running when the driver moves on."""
    Path(started).write_text("started")
    time.sleep(seconds)
    Path(out).write_text("done")
    return "done"


# ---- the rest of the crash table: what only a remote executor can tell apart ---------------
class NeedsTwoArgs(Exception):
    """Pickles fine but cannot be unpickled: __init__ wants two arguments, args holds one."""

    def __init__(self, a, b):
        super().__init__(f"{a}-{b}")


class HoldsALock(Exception):
    """Cannot be pickled: it holds a lock."""

    def __init__(self):
        super().__init__("with a lock inside")
        import threading

        self.lock = threading.Lock()


def raise_needs_two():
    raise NeedsTwoArgs(1, 2)


def raise_holds_lock():
    raise HoldsALock()


def return_a_lock():
    import threading

    return threading.Lock()


def allocate(megabytes, hold_s=30.0):
    """Touch ``megabytes`` of memory (resident, not just reserved) and keep it ``hold_s``, as a
    task that works on it would: memory limits are enforced by sampling the process's size."""
    print(f"allocating {megabytes} MB", flush=True)
    block = b"x" * (megabytes * 2**20)
    time.sleep(hold_s)
    return len(block)


def read_shared(handle):
    return handle.value


def identity_of(obj):
    return type(obj).__name__
