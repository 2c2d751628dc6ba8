"""Staging a job's bytes in storage: the function once, arguments inline or packed.

* The pickled function is stored under a content-addressed key
  (``{session}/fn/{sha256 of the pickle}``), once per executor session: a second job of the
  same function uploads nothing, and a warm runtime that already holds that key skips the
  download. The runtime recomputes the hash before unpickling.
* A task's pickled calls travel inside the invocation event when small; the large ones of a
  job are packed into ONE object and each task reads its byte range — never one object per
  argument.

Every blob is signed with its context (``lambdamr.signing.Context``): a function or shared
object with its session and storage key, a task's arguments with its job, task and (packed)
the key of the argument object — so no signed blob is accepted anywhere else. Inline
arguments are signed as their event is built (the same bytes, signed later: a task waiting
in the driver keeps only its pickle), packed ones here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from lambdamr import serialize
from lambdamr.data.buffers import BufferSink
from lambdamr.data.shared import Shared, shared_context
from lambdamr.driver.inputs import Call
from lambdamr.driver.job import Task
from lambdamr.errors import PayloadTooLargeError
from lambdamr.protocol import EXTRA_ENV_MAX_BYTES, ArgsRange, arguments_context, function_context
from lambdamr.signing import Context, Signer, content_hash
from lambdamr.storage import Storage
from lambdamr.storage.local import LocalStorage

#: Room kept in an event for everything but the inline arguments (a job's extra_env included).
EVENT_OVERHEAD = 4096 + EXTRA_ENV_MAX_BYTES
#: S3's largest object; a packed argument object may not exceed it.
MAX_OBJECT_BYTES = 5 * 1024**4


class Stager:
    """Writes functions, arguments and shared objects of one executor session."""

    def __init__(
        self, storage: Storage, session_prefix: str, signer: Signer, *, inline_args_max: int, max_payload_bytes: int,
        scratch: LocalStorage | None = None,
    ) -> None:
        self.storage = storage
        self.scratch = scratch  # the session's folder in RAM for big buffers (a local, non-durable session)
        self.signer = signer
        self.session_prefix = session_prefix
        self.session_id = session_prefix.rsplit("/", 1)[-1]
        self.inline_args_max = min(inline_args_max, max(0, (max_payload_bytes - EVENT_OVERHEAD) * 3 // 4))
        self._uploaded: dict[str, int] = {}  # key -> signed size, of what this session stored
        self._lock = threading.Lock()

    def _put_once(self, folder: str, context: Callable[[str, str], Context], payload: bytes) -> tuple[str, int]:
        """Sign ``payload`` for its content-addressed key and store it once; (key, size)."""
        key = f"{self.session_prefix}/{folder}/{content_hash(payload)}"
        with self._lock:
            size = self._uploaded.get(key)
        if size is not None:  # stored already (every submit of a function pickles it again)
            return key, size
        data = self.signer.sign(payload, context(self.session_id, key))
        self.storage.put(key, data)
        with self._lock:
            self._uploaded[key] = len(data)
        return key, len(data)

    def stage_function(self, fn: Any) -> str:
        """Store the pickled function (once per session); return its key."""
        name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
        key, _ = self._put_once("fn", function_context, serialize.dumps(fn, what=f"function {name}"))
        return key

    def share(self, obj: Any) -> Shared[Any]:
        """Store ``obj`` once and return a handle tasks can read it through."""
        payload = serialize.dumps(obj, what="shared object", sink=self._sink(f"{self.session_prefix}/values"))
        key, size = self._put_once("shared", shared_context, payload)
        return Shared(self.storage.spec(), key, size, session=self.session_id)

    def _sink(self, prefix: str) -> BufferSink:
        return BufferSink(self.storage, prefix, scratch=self.scratch)

    def stage_calls(self, job_prefix: str, tasks: Sequence[Task], calls: Sequence[Sequence[Call]]) -> None:
        """Pickle each task's calls; set them inline on the task or pack them into one object."""
        packed: list[bytes] = []
        offset = 0
        # A streaming map stages its tasks in batches: one packed object per batch.
        key = f"{job_prefix}/args" if not tasks or tasks[0].task_id == 0 else f"{job_prefix}/args.{tasks[0].task_id:06d}"
        sink = self._sink(f"{job_prefix}/values")  # big buffers (numpy arrays): objects of their own
        for task, task_calls in zip(tasks, calls):
            what = (
                f"arguments of call {task.task_id}" if len(task_calls) == 1 else f"arguments of task {task.task_id}"
            )
            payload = serialize.dumps(list(task_calls), what=what, sink=sink)
            inline = arguments_context(task.job.job_id, task.task_id, None)
            if self.signer.signed_size(len(payload), inline) <= self.inline_args_max:
                # Signed for this job and task when its event is built (``Task.args_inline``):
                # a call waiting in the driver holds its pickle only.
                task.hold_arguments(payload)
            else:
                data = self.signer.sign(payload, arguments_context(task.job.job_id, task.task_id, key))
                task.args_range = ArgsRange(key, offset, len(data))
                packed.append(data)
                offset += len(data)
        if offset > MAX_OBJECT_BYTES:
            raise PayloadTooLargeError(
                f"the job's arguments take {offset / 1024**3:.1f} GiB, more than one storage object "
                "can hold (5 TiB); pass storage keys or lambdamr.Shared handles instead of data"
            )
        if packed:
            self.storage.put(key, b"".join(packed))
