"""The local backend: a pool of warm worker processes running the runtime handler.

Each worker is a fresh interpreter (``python -m lambdamr.backends.local_worker``), like a
Lambda container: it imports nothing of the driver's ``__main__``, so whatever works here
was shipped the way it will be shipped to Lambda. Workers are reused across tasks and jobs
("warm"), and enforce Lambda's limits: a task past its timeout has its worker killed
(``TaskTimeoutError``); a task past its memory ends its worker (``TaskOutOfMemoryError``); a
worker that dies for any other reason fails its task with ``WorkerLostError``. A dead
worker is replaced. A worker reports when its imports are done; one that dies before
(killed while starting) had started none of its tasks, so they go to another worker without
costing an attempt — only attempts that ran are charged.

One dispatcher thread owns the workers: it hands each idle worker up to ``prefetch``
invocations (so a worker never waits for the driver between tasks), claiming each as it
writes it (``Backend.claim``: its calls turn running, or it is dropped when they were all
cancelled), waits on all worker sockets at once, and reports each invocation's end through
the ``on_outcome`` callback.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lambdamr.backends import local_wire as wire
from lambdamr.backends.base import Backend, Invocation, InvocationOutcome, OutcomeCallback
from lambdamr.backends.local_options import LocalOptions, validate_workers
from lambdamr.backends.local_worker import ENFORCE_MEMORY_ENV, LOW_WATER_ENV, OUT_OF_MEMORY
from lambdamr.errors import (
    BackendError,
    IntegrityError,
    ProtocolError,
    TaskOutOfMemoryError,
    TaskTimeoutError,
    WorkerLostError,
)
from lambdamr.protocol import TaskEvent
from lambdamr.signing import KEY_ENV

if TYPE_CHECKING:
    from lambdamr.config import ExecutorConfig
    from lambdamr.storage import Storage

log = logging.getLogger("lambdamr")

_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])
#: job slots the dispatcher remembers (a job seen again after that gets a new slot)
_SLOTS_KEPT = 1024
#: while tasks are short (on a recent average, and the one a worker runs too) a worker is
#: kept about this much work ahead, up to ``MAX_DEPTH`` invocations: it then reports and is
#: refilled in batches (a frame each way carries many tasks, and neither side wakes per
#: task). Longer tasks are queued only ``prefetch`` deep, so that few wait behind a slow
#: one (and stay cancellable).
QUEUED_WORK_S = 0.002
SHORT_TASK_S = 0.005
MAX_DEPTH = 64
_DRIVER_BUFFER_PER_WORKER = 8
#: workers in a row that exit by themselves before they are ready (a broken interpreter or
#: environment, not a kill from outside) before the tasks waiting for them fail
MAX_STARTUP_EXITS = 3
#: seconds without any worker getting ready, while workers die trying, before the tasks
#: waiting for them fail (workers killed from outside as fast as they start)
STARTUP_STALL_S = 60.0


@dataclass(slots=True)
class _Running:
    invocation: Invocation
    number: int  # the request number on the wire (the request id is "{prefix}-{number}")
    slot: int  # the job slot it was sent under
    started_at: float | None = None  # None while queued behind another in the worker


@dataclass(eq=False)
class _Worker:
    process: subprocess.Popen[bytes]
    sock: socket.socket
    reader: wire.FrameReader
    queue: collections.deque[_Running] = field(default_factory=collections.deque)
    ready: bool = False  # its imports are done: what it was sent can start
    #: the job slots this worker holds, oldest first (it forgets them in the same order)
    slots: collections.OrderedDict[int, None] = field(default_factory=collections.OrderedDict)


class LocalBackend(Backend):
    """Runs tasks in ``workers`` reusable local processes (default: the CPU count)."""

    name = "local"
    reports_outcomes = True
    claims_handover = True  # a call is running once it is written to a worker

    def __init__(self, workers: int | None = None, *, prefetch: int = 2, enforce_memory: bool = True) -> None:
        self.workers = validate_workers(workers) or os.cpu_count() or 1
        self.prefetch = max(1, prefetch)
        self.enforce_memory = enforce_memory
        self._on_outcome: OutcomeCallback | None = None
        self._pending: collections.deque[Invocation] = collections.deque()
        self._lock = threading.Lock()
        self._pool: list[_Worker] = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._idle = False
        self._id_prefix = uuid.uuid4().hex[:12]
        self._request_numbers = itertools.count(1)
        self._slots: dict[tuple[Any, ...], int] = {}  # job key -> slot, bounded (wire.job_key)
        self._slot_numbers = itertools.count(1)
        self._options_seen: dict[str, Any] | None = None  # the options of the last event slotted
        self._options_seen_key: tuple[Any, ...] = ()  # and their part of its job key
        self._key = b""  # the signing key the workers sign their completion frames with
        self._recent_task_s = 1.0  # moving average of task times; long until measured
        self.workers_started = 0
        self.workers_lost = 0
        self.workers_lost_starting = 0  # died before they were ready: no task charged
        self._startup_exits = 0  # in a row, since a worker was last ready
        self._startup_deaths = 0
        self._last_ready_at = time.monotonic()  # or since the backend started

    @classmethod
    def from_config(cls, config: ExecutorConfig, storage: Storage) -> LocalBackend:
        return cls(workers=LocalOptions.of(config).workers)

    @property
    def capacity(self) -> int:
        # A small buffer beyond what the workers hold lets the scheduler top up in batches
        # instead of waking once per finished task. What waits here is still pending (and
        # cancellable): a call is claimed, and running, only as it is written to a worker.
        return self.workers * (max(MAX_DEPTH, self.prefetch) + _DRIVER_BUFFER_PER_WORKER)

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self, on_outcome: OutcomeCallback) -> None:
        if self._thread is not None:
            return
        self._on_outcome = on_outcome
        self._key = self.signing_key()
        self._last_ready_at = time.monotonic()
        self._pool = [self._spawn() for _ in range(self.workers)]
        self._thread = threading.Thread(target=self._run, name="lambdamr-local-backend", daemon=True)
        self._thread.start()

    def _spawn(self) -> _Worker:
        parent, child = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_PARENT, env.get("PYTHONPATH")]))
        env[KEY_ENV] = self.signing_key().hex()
        env[ENFORCE_MEMORY_ENV] = "1" if self.enforce_memory else "0"
        # A worker reports what it holds once it is down to this many queued: a quarter of
        # the deepest queue, so the driver refills it before it runs dry.
        env[LOW_WATER_ENV] = str(max(1, max(MAX_DEPTH, self.prefetch) // 4))
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "lambdamr.backends.local_worker", str(child.fileno()), self._id_prefix],
                pass_fds=(child.fileno(),),
                env=env,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in the terminal goes to the driver only
            )
        except OSError as exc:
            raise BackendError(f"cannot start a local worker process with {sys.executable}: {exc}") from exc
        finally:
            child.close()
        self.workers_started += 1
        parent.setblocking(True)
        return _Worker(process=process, sock=parent, reader=wire.FrameReader(parent))

    def invoke(self, invocations: Sequence[Invocation]) -> None:
        if self._thread is None:
            raise BackendError("the local backend was not started")
        if self._stopping:
            raise BackendError("the local backend is shut down")
        with self._lock:
            self._pending.extend(invocations)
        if self._idle:  # the dispatcher is blocked in wait(); otherwise it will see them
            self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass

    def shutdown(self, wait: bool = True) -> None:
        if self._thread is None:
            return
        if wait:
            while self._thread.is_alive() and (self._pending or any(w.queue for w in self._pool)):
                time.sleep(0.01)
        self._stopping = True
        self._wake()
        self._thread.join(timeout=5)
        for worker in self._pool:
            self._stop_worker(worker, kill=not wait)
        self._pool = []
        self._thread = None

    def _stop_worker(self, worker: _Worker, kill: bool) -> None:
        try:
            # The worker's recv sees EOF and it exits; shutdown() first, as close() alone sends
            # no EOF while a process forked from the driver still holds a copy of the socket.
            worker.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            worker.sock.close()
        except OSError:
            pass
        if kill:
            self._kill(worker)
        try:
            worker.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self._kill(worker)
            worker.process.wait()

    @staticmethod
    def _kill(worker: _Worker) -> None:
        try:
            worker.process.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass

    # ---- the dispatcher thread ----------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping:
            self._assign()
            timeout = self._next_deadline_in()
            self._idle = True  # set before looking at _pending again: see invoke()
            with self._lock:
                if self._pending and any(len(w.queue) < self.prefetch for w in self._pool):
                    timeout = 0
            ready = wait([self._wake_r, *(w.sock for w in self._pool)], timeout)
            self._idle = False
            for obj in ready:
                if obj is self._wake_r:
                    try:
                        while self._wake_r.recv(4096):
                            pass
                    except (BlockingIOError, OSError):
                        pass
                    continue
                worker = next((w for w in self._pool if w.sock is obj), None)
                if worker is not None:
                    self._receive(worker)
            self._enforce_timeouts()

    def _depth(self, worker: _Worker, now: float) -> int:
        """How many invocations ``worker`` may hold: about ``QUEUED_WORK_S`` of work while
        tasks are short and its current one is too, else ``prefetch``."""
        head = worker.queue[0] if worker.queue else None
        head_short = head is None or head.started_at is None or now - head.started_at < SHORT_TASK_S
        recent = self._recent_task_s
        if recent < SHORT_TASK_S and head_short:
            return max(self.prefetch, min(MAX_DEPTH, int(QUEUED_WORK_S / max(recent, 1e-6))))
        return self.prefetch

    def _assign(self) -> None:
        now = time.time()
        with self._lock:
            if not self._pending or not self._pool:
                return
            batches: dict[_Worker, list[Invocation]] = {}
            held = {w: len(w.queue) for w in self._pool}  # what each holds, with what it is about to get
            depths = {w: self._depth(w, now) for w in self._pool}
            while self._pending:
                # Always the least busy worker, so work spreads before any worker queues;
                # between equals a ready one, rather than one still starting.
                worker = min(self._pool, key=lambda w: (held[w], not w.ready))
                if held[worker] >= depths[worker]:
                    break
                invocation = self._pending.popleft()
                if not self.claim(invocation):
                    continue  # cancelled while it waited here
                batches.setdefault(worker, []).append(invocation)
                held[worker] += 1
            for worker, invocations in batches.items():
                if not self._send(worker, invocations):
                    self._pending.extendleft(reversed(invocations))

    def _slot(self, event: TaskEvent) -> int:
        """The job slot of ``event``'s job (a new one for a job not seen lately)."""
        options = event.options
        if options is not self._options_seen:  # the scheduler gives its events one dict while they are the same
            # Held (not just its id) so that no other dict can come at this address.
            self._options_seen, self._options_seen_key = options, wire.options_key(options)
        key = wire.job_key(event, self._options_seen_key)
        slot = self._slots.get(key)
        if slot is None:
            if len(self._slots) >= _SLOTS_KEPT:
                del self._slots[next(iter(self._slots))]
            slot = self._slots[key] = next(self._slot_numbers)
        return slot

    def _send(self, worker: _Worker, invocations: list[Invocation]) -> bool:
        """Write ``invocations`` to ``worker`` in one TASKS frame (after the JOB frames it lacks)."""
        now = time.time()
        parts: list[bytes | memoryview] = []
        entries = []
        running: list[_Running] = []
        for invocation in invocations:
            event = invocation.event
            slot = self._slot(event)
            if slot not in worker.slots:
                parts += wire.encode_job(slot, event)
                worker.slots[slot] = None
                while len(worker.slots) > wire.JOB_SLOTS_PER_WORKER:
                    worker.slots.popitem(last=False)
            number = next(self._request_numbers)
            args = event.inline_args_bytes() if event.has_inline_args else None
            entries.append((number, slot, event, args))
            started = None if worker.queue or running or not worker.ready else now
            running.append(_Running(invocation, number, slot, started_at=started))
        parts += wire.encode_tasks(entries)
        try:
            wire.send_parts(worker.sock, parts)
        except OSError:
            worker.slots.clear()  # the worker is dead; _receive will replace it
            return False
        worker.queue.extend(running)
        return True

    def _receive(self, worker: _Worker) -> None:
        try:
            while True:
                body = worker.reader.read()
                # A whole frame already read with this one goes next; anything still arriving
                # is for the next wait() (no system call here).
                if not self._take(worker, body) or not worker.reader.has_frame():
                    return
        except (EOFError, OSError):
            self._replace(worker, reason=None)

    def _take(self, worker: _Worker, body: memoryview) -> bool:
        """Handle one frame from ``worker``; False when the worker was replaced meanwhile."""
        now = time.time()
        kind = bytes(body[:1])
        if kind == wire.READY:
            worker.ready = True
            self._startup_exits = self._startup_deaths = 0
            self._last_ready_at = time.monotonic()
            if worker.queue:
                worker.queue[0].started_at = now
            return True
        if kind == wire.FATAL:
            reply = wire.decode_json(body)
            failed = worker.queue[0] if worker.queue and worker.queue[0].number == reply.get("rid") else None
            self._replace(worker, reason=reply.get("error"), failed=failed)
            return False
        if kind != wire.DONE:
            self._replace(worker, reason=None, error=ProtocolError(f"a local worker sent an unknown frame {kind!r}"))
            return False
        try:
            entries = wire.decode_done(self._key, body)
        except (IntegrityError, ProtocolError) as exc:
            log.warning("lambdamr: %s", exc)
            self._replace(worker, reason=None, error=exc)
            return False
        outcomes = []
        try:
            for done in entries:
                if not worker.queue or worker.queue[0].number != done.number:
                    self._replace(worker, reason=None, error=ProtocolError(
                        f"a local worker answered request {done.number}, which it was not running"))
                    return False
                running = worker.queue.popleft()
                if worker.queue:
                    worker.queue[0].started_at = now
                # As the worker timed it: what the driver sees includes its own delays.
                self._recent_task_s += 0.2 * (done.ran_s - self._recent_task_s)
                outcomes.append(self._outcome(running, done, now))
        finally:
            self._report_all(outcomes)  # the frame's outcomes in one message
        return True

    def _outcome(self, running: _Running, done: wire.Done, now: float) -> InvocationOutcome:
        """The outcome a completion entry reports, once it is checked to be about ``running``."""
        invocation = running.invocation
        event = invocation.event
        started_at = running.started_at
        if (done.slot, done.task_id, done.attempt) != (running.slot, event.task_id, event.attempt):
            # The frame's signature covers the entry, so only a worker holding the key gets here;
            # the attempt is refused and, like a lost one, runs again.
            refused = IntegrityError(
                f"refusing a local worker's completion: it is for job slot {done.slot} task {done.task_id} "
                f"attempt {done.attempt}, the request was slot {running.slot} task {event.task_id} "
                f"attempt {event.attempt}"
            )
            lost = WorkerLostError(f"the worker's answer was refused: {refused}", **self._where(running))
            lost.__cause__ = refused
            return InvocationOutcome(invocation, error=lost, started_at=started_at, ended_at=now)
        if done.kind == wire.RECORD:
            return InvocationOutcome.of_record(invocation, done.payload, started_at, now)
        if done.kind == wire.STORED:
            return InvocationOutcome(invocation, response={"result_key": event.result_key}, started_at=started_at, ended_at=now)
        if done.kind == wire.EXPIRED:
            expired = {"expired": True, "late_s": done.late_s}
            return InvocationOutcome(invocation, response=expired, started_at=started_at, ended_at=now)
        error = json.loads(bytes(done.payload)) if done.kind == wire.FAILED else {"errorType": "?", "errorMessage": "?"}
        return InvocationOutcome(
            invocation,
            error=WorkerLostError(
                f"the runtime handler failed: {error.get('errorType')}: {error.get('errorMessage')}",
                **self._where(running),
                logs="\n".join(error.get("stackTrace", [])[-10:]),
            ),
            started_at=started_at,
            ended_at=now,
        )

    def _where(self, running: _Running) -> dict[str, Any]:
        event = running.invocation.event
        return {
            "job_id": event.job_id, "task_id": event.task_id, "attempt": event.attempt,
            "request_id": f"{self._id_prefix}-{running.number}",
        }

    def _replace(
        self, worker: _Worker, reason: dict[str, Any] | None, failed: _Running | None = None, error: BaseException | None = None
    ) -> None:
        """Fail the worker's current task, requeue the ones it had not started, start a new one.

        A worker that dies before it is ready had started nothing: every task it held is
        requeued without being charged an attempt.
        """
        self._stop_worker(worker, kill=True)
        code = worker.process.returncode
        self.workers_lost += 1
        if not worker.ready:
            self.workers_lost_starting += 1
            self._count_startup_death(code)  # may fail what it held, if workers keep dying
        queue = list(worker.queue)
        if failed is None and queue and queue[0].started_at is not None:
            failed = queue.pop(0)
        elif failed is not None and queue and queue[0] is failed:
            queue.pop(0)
        if failed is not None:
            if error is None and reason and reason.get("errorType") == OUT_OF_MEMORY:
                error = TaskOutOfMemoryError(
                    f"the task went past its memory limit of {failed.invocation.event.memory_mb} MB; "
                    "give it more with memory_mb=... (AWS Lambda allows up to 10,240 MB) or process "
                    "the data in smaller pieces",
                    **self._where(failed),
                    logs=(reason or {}).get("logs") or None,
                )
            elif error is None:
                how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                error = WorkerLostError(
                    f"the worker process running the task died ({how}); the task did not finish",
                    **self._where(failed),
                )
            self._report(InvocationOutcome(failed.invocation, error=error, started_at=failed.started_at, ended_at=time.time()))
        with self._lock:
            self._pending.extendleft(reversed([r.invocation for r in queue]))
            index = self._pool.index(worker)
            if not self._stopping:
                self._pool[index] = self._spawn()
            else:
                self._pool.pop(index)

    def _count_startup_death(self, code: int | None) -> None:
        """Fail what waits for workers when they keep dying before they are ready."""
        self._startup_deaths += 1
        if code is not None and code >= 0:
            self._startup_exits += 1
        stalled = time.monotonic() - self._last_ready_at
        if self._startup_exits < MAX_STARTUP_EXITS and stalled < STARTUP_STALL_S:
            return  # killed from outside: a later worker will get ready, keep trying
        how = (
            f"{self._startup_exits} exited by themselves (last exit code {code}); their error output "
            f"went to this process's stderr, and `{sys.executable} -c 'import lambdamr.runtime.handler'` "
            "shows an import failure"
            if self._startup_exits >= MAX_STARTUP_EXITS
            else f"none got ready in {stalled:.0f} s; workers killed before they were ready: "
            f"{self._startup_deaths} (the last by signal {-(code or 0)})"
        )
        self._startup_exits = self._startup_deaths = 0
        self._last_ready_at = time.monotonic()  # the next tasks get as long again
        error = BackendError(f"local worker processes keep dying while they start: {how}")
        with self._lock:
            waiting, self._pending = list(self._pending), collections.deque()
        for other in self._pool:
            waiting += [r.invocation for r in other.queue if r.started_at is None]
            other.queue = collections.deque(r for r in other.queue if r.started_at is not None)
        for invocation in waiting:
            self._report(InvocationOutcome(invocation, error=error, started_at=None, ended_at=time.time()))

    def _next_deadline_in(self) -> float | None:
        deadlines = []
        for worker in self._pool:
            head = worker.queue[0] if worker.queue else None
            if head is not None and head.started_at is not None:
                deadlines.append(head.started_at + head.invocation.event.timeout_s)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.time()) + 0.001

    def _enforce_timeouts(self) -> None:
        now = time.time()
        for worker in list(self._pool):
            head = worker.queue[0] if worker.queue else None
            if head is None or head.started_at is None:
                continue
            limit = head.invocation.event.timeout_s
            if now - head.started_at > limit:
                error = TaskTimeoutError(
                    f"the task ran past its timeout of {limit:g} s and was stopped; raise it with "
                    "timeout_s=... (AWS Lambda allows up to 900 s) or split the work into more tasks",
                    **self._where(head),
                )
                self._replace(worker, reason=None, failed=head, error=error)

    def _report(self, outcome: InvocationOutcome) -> None:
        assert self._on_outcome is not None
        self._on_outcome(outcome)

    def _report_all(self, outcomes: list[InvocationOutcome]) -> None:
        if len(outcomes) > 1 and self._on_outcomes is not None:
            self._on_outcomes(outcomes)
        else:
            for outcome in outcomes:
                self._report(outcome)

    def worker_pids(self) -> list[int]:
        """The process ids of the current workers (for fault injection and monitoring)."""
        with self._lock:
            return [worker.process.pid for worker in self._pool]

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "capacity": self.capacity,
            "workers": self.workers,
            "workers_started": self.workers_started,
            "workers_lost": self.workers_lost,
            "workers_lost_starting": self.workers_lost_starting,
        }
