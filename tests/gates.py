"""Gates: files by which a test and its tasks say "started" and "go on", never sleeps.

A task that must still be running while the test looks at it waits for a file the test
writes (``wait_for``); a task says it started by writing one (``touch``); the test waits for a
state the executor reaches by itself with ``until``. Both run remotely
(inline threads, local workers, the Lambda stand-in), which all share this machine's disk.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: how long a task waits for its gate before it fails the test (a busy machine is slow, not stuck)
WAIT_S = 60


def wait_for(path: str, value: Any = None, limit_s: float = WAIT_S) -> Any:
    """Block until the test writes ``path`` (its signal to finish), then return ``value``."""
    deadline = time.monotonic() + limit_s
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.005)
    return value


def until(condition: Callable[[], object], timeout: float = WAIT_S, what: str = "the expected state") -> None:
    """In the test: block until ``condition()`` holds, a state the executor reaches by itself
    (a call handed to a worker, a record written); fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never reached {what} in {timeout:g} s"
        time.sleep(0.005)


def touch(path: str) -> str:
    """Say "started" by writing ``path``; return it."""
    Path(path).write_text("started")
    return path
