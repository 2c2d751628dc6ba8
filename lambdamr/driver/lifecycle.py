"""How an executor lets go of what it holds: the scheduler thread, the backend's workers or
connections, the job manifests, the session lease and the session's temp objects.

``ExecutorResources`` holds them apart from the ``LambdaExecutor`` that uses them, and
nothing in them refers back to the executor, so a weakref finalizer can release them once
the executor is garbage collected (as ``ProcessPoolExecutor`` does). They are released

* after every submitted call has finished: ``shutdown(wait=True)`` in the caller's thread;
  ``shutdown(wait=False)``, garbage collection and interpreter exit on a background thread
  (``concurrent.futures`` semantics: submitted work finishes unless ``cancel_futures``);
* at once with ``abandon``: calls not started are cancelled, running ones fail with
  ``BackendError`` and the workers are stopped (Ctrl-C: ``__exit__`` on a
  ``KeyboardInterrupt``, an interpreter ending on one, or a Ctrl-C while exit waits).

At interpreter exit — in ``threading``'s exit hooks, like the stdlib's executors, so before
any ``atexit`` function and while threads still run — every executor stops taking work
("cannot schedule new futures after interpreter shutdown") and its calls finish first.

A process forked from the driver (``multiprocessing``'s default start method on Linux, a
``ProcessPoolExecutor`` made after the executor) inherits a copy of every executor, without
its threads. The copy is not the child's to release: in the child, ``close`` does nothing and
no executor is open, so the child's exit (``multiprocessing`` runs ``threading``'s exit hooks
too) neither waits for threads it does not have nor stops the driver's workers, deletes the
session's temp objects or removes its scratch folder under the driver's feet.
"""

from __future__ import annotations

import concurrent.futures.thread  # noqa: F401 - registers its exit hook before ours: see the end
import logging
import os
import sys
import threading
from typing import TYPE_CHECKING

from lambdamr.errors import LambdaMRError

if TYPE_CHECKING:
    from lambdamr.backends import Backend
    from lambdamr.driver.history import JobHistory
    from lambdamr.driver.lease import SessionLease
    from lambdamr.driver.record_writer import JobRecordWriter
    from lambdamr.driver.scheduler import Scheduler
    from lambdamr.storage import Storage
    from lambdamr.storage.scratch import SessionScratch

log = logging.getLogger("lambdamr")

_open: set[ExecutorResources] = set()  # not yet released; they never refer to their executor
_exit_lock = threading.Lock()
_exiting = False


def interpreter_exiting() -> bool:
    """Whether the interpreter has started exiting (no executor takes new work then)."""
    return _exiting


class ExecutorResources:
    """What one executor must release, and the one way to release it."""

    def __init__(
        self,
        *,
        scheduler: Scheduler,
        backend: Backend,
        storage: Storage,
        manifests: JobRecordWriter,
        lease: SessionLease,
        history: JobHistory,
        session_prefix: str,
        keep_temp: bool,
        scratch: SessionScratch | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.backend = backend
        self.storage = storage
        self.manifests = manifests
        self.lease = lease
        self.history = history
        self.session_prefix = session_prefix
        self.keep_temp = keep_temp
        self.scratch = scratch  # the session's big buffers in RAM: removed with it, kept_temp or not
        self.adopted_prefixes: list[str] = []  # jobs of earlier drivers collected by attach()
        self.started = False
        self._lock = threading.Lock()  # held for the whole release: a second closer waits for it
        self._released = False
        self._closer: threading.Thread | None = None
        self._owner_pid = os.getpid()  # a forked child's copy is not its to release
        _open.add(self)

    def owned_here(self) -> bool:
        """Whether this process made these resources (not a child forked from it)."""
        return os.getpid() == self._owner_pid

    def start(self) -> None:
        """Start the scheduler and the backend (once), before the first job."""
        with self._lock:
            if self._released:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if not self.started:
                self.scheduler.start()
                self.started = True

    def cancel_pending(self) -> None:
        """Cancel every call that no worker or container has yet."""
        if self.started:
            self.scheduler.cancel_pending()

    def close(self, *, abandon: bool = False) -> None:
        """Release everything once every submitted call has finished (at once with ``abandon``)."""
        if not self.owned_here():
            return
        if abandon:
            self.cancel_pending()
        elif self.started:
            if self.scheduler.on_own_thread():
                # shutdown() from a done-callback: the thread it would wait for is this one.
                self.close_in_background()
                return
            self.scheduler.seal_all()  # a streaming map still open ends with the tasks it has
            self.scheduler.wait_idle()
        self._release(abandon)

    def close_in_background(self) -> None:
        """``close()`` on a thread of its own (``shutdown(wait=False)``, garbage collection)."""
        if not self.owned_here():
            return
        with self._lock:
            if self._released or self._closer is not None:
                return
            self._closer = threading.Thread(target=self._close_quietly, name="lambdamr-shutdown", daemon=True)
            self._closer.start()

    def _close_quietly(self) -> None:
        try:
            self.close()
        except Exception as exc:  # nobody is left to raise it to
            log.warning("lambdamr: releasing the executor of session %s failed: %s", self.session_prefix, exc)

    def _release(self, abandon: bool) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
            try:
                if self.started:
                    self.scheduler.stop()  # with abandon: what still runs fails with BackendError
                    self.backend.shutdown(wait=not abandon)
                self.manifests.close(flush=self.keep_temp)  # before cleanup deletes them
                self.history.close()  # the jobs' last records; they outlive the session
                self.lease.release(delete_adopted=not self.keep_temp)
                if not self.keep_temp:
                    self.cleanup()
            finally:
                if self.scratch is not None:
                    self.scratch.close()
                _open.discard(self)

    def cleanup(self) -> int:
        """Delete every object the executor wrote; return how many were deleted."""
        try:
            for prefix in self.adopted_prefixes:
                self.storage.delete_prefix(prefix + "/")
            return self.storage.delete_prefix(self.session_prefix + "/")
        except LambdaMRError as exc:
            log.warning("lambdamr: could not delete temp objects under %s: %s", self.storage.url(self.session_prefix), exc)
            return 0


def _ended_on_ctrl_c() -> bool:
    last = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)  # set by the top-level traceback
    return isinstance(last, KeyboardInterrupt)


def _at_exit() -> None:
    """Let every open executor's calls finish, then release it — at once on Ctrl-C."""
    global _exiting
    with _exit_lock:
        _exiting = True
    abandon = _ended_on_ctrl_c()
    for resources in list(_open):
        try:
            try:
                resources.close(abandon=abandon)
            except KeyboardInterrupt:  # a Ctrl-C while exit waits for the calls
                resources.close(abandon=True)
        except Exception as exc:  # nothing can be raised to anyone at exit
            log.warning("lambdamr: releasing the executor of session %s at exit failed: %s", resources.session_prefix, exc)


def _after_fork_in_child() -> None:
    """A forked child starts with no executor of its own (see the module's docstring), and
    with a lock of its own: the driver's may have been held by a thread the child has not."""
    global _exit_lock
    _open.clear()
    _exit_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)

# threading runs these hooks in reverse order of registration: ours, registered after the
# thread pools' (imported above), runs first, while the pools that run and fetch tasks still work.
_register = getattr(threading, "_register_atexit", None)  # what concurrent.futures.thread uses
if _register is not None:
    _register(_at_exit)
else:  # pragma: no cover - CPython has had it since 3.9
    import atexit

    atexit.register(_at_exit)
