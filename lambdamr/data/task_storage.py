"""Storage inside a task: ``lambdamr.task_storage()`` reads and writes the job's objects.

    from lambdamr import task_storage

    def render(frame):
        store = task_storage()                          # bound to the running task
        ref = store.put("frame.png", png_bytes)         # ObjectRef: temp, gone at shutdown
        keep = store.put("s3://my-bucket/out/frame-1.png", png_bytes)   # outlives the session
        model = store.put_value(fitted)                 # ValueRef: pickled and signed
        return ref                                      # a few hundred bytes in the result

    refs = list(ex.map(render, frames))
    refs[0].get()                                       # the bytes, checked against their digest

Where objects go: a plain name goes under the task attempt's own temp folder,
``{prefix}/{session}/{job}/objects/{task:06d}.{attempt}/{name}``, deleted with the session's
other temp objects when the executor shuts down (kept with ``keep_temp``); a URL
(``s3://bucket/key``; ``file:///folder/key`` on local storage) goes exactly there and is never
deleted by lambdamr. On AWS the function's role writes only its grants (the temp prefix and
``lambdamr deploy --write`` prefixes) and reads only its read grants: a task told to write
elsewhere fails with ``StoragePermissionError`` naming the deploy command.

The handle is bound to the task that called ``task_storage()``: pass it to threads the task
starts (a new thread does not inherit the task's context). Called outside a task,
``task_storage()`` raises ``NotInTaskError``.
"""

from __future__ import annotations

import contextvars
import itertools
import os
from typing import IO, Any, TypeVar
from urllib.parse import urlparse

from lambdamr import serialize
from lambdamr.data import digest
from lambdamr.data.refs import ObjectRef, ValueRef, location_of, task_value_context, trust_signer
from lambdamr.errors import ConfigurationError, NotInTaskError, StoragePermissionError
from lambdamr.protocol import TaskEvent
from lambdamr.signing import Signer
from lambdamr.storage import Storage, open_cached

T = TypeVar("T")

#: the function's environment variable that lists its grants (``backends/aws/grants.py``)
_GRANTS_ENV = "LAMBDAMR_GRANTS"

_current: contextvars.ContextVar[_Binding | None] = contextvars.ContextVar("lambdamr_task_storage", default=None)


class _Binding:
    """What the runtime knows of the running task; the handle is made on first use."""

    __slots__ = ("task", "store", "signer", "handle")

    def __init__(self, task: TaskEvent, store: Storage, signer: Signer) -> None:
        self.task = task
        self.store = store
        self.signer = signer
        self.handle: TaskStorage | None = None


class bound_to:  # noqa: N801 - used as a function: ``with bound_to(task, store, signer):``
    """``task_storage()`` answers for ``task`` meanwhile (the runtime wraps each task in it).
    A class rather than a generator: it runs for every task, and costs a few hundred ns."""

    __slots__ = ("_binding", "_token")

    def __init__(self, task: TaskEvent, store: Storage, signer: Signer) -> None:
        self._binding = _Binding(task, store, signer)

    def __enter__(self) -> None:
        self._token = _current.set(self._binding)

    def __exit__(self, *exc: object) -> None:
        _current.reset(self._token)


def task_storage() -> TaskStorage:
    """The storage handle of the running task.

    Raises:
        NotInTaskError: called outside a task (in the driver, or in a thread the task started
            without passing it the handle).
    """
    binding = _current.get()
    if binding is None:
        raise NotInTaskError(
            "task_storage() works only inside a running lambdamr task; in the driver, open the ObjectRef or "
            "ValueRef a task returned with .get(). In a thread the task started, call task_storage() in the "
            "task itself and pass the handle to the thread"
        )
    if binding.handle is None:
        trust_signer(binding.signer)
        binding.handle = TaskStorage(binding.task, binding.store, binding.signer)
    return binding.handle


def _task_folder(task: TaskEvent) -> str:
    """``{job}/objects/{task:06d}.{attempt}``: beside ``{job}/results/``, of this attempt only."""
    job_prefix, found, _ = task.result_key.rpartition("/results/")
    base = job_prefix if found else f"{task.result_key}.d"
    return f"{base}/objects/{task.task_id:06d}.{task.attempt}"


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"task storage name {name!r}: give a relative name such as 'part-1.bin', or a URL")
    parts = name.split("/")
    if name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ConfigurationError(
            f"task storage name {name!r}: give a relative name without '..' or empty parts (e.g. 'out/part-1.bin'), "
            "or a URL such as s3://bucket/key"
        )
    return name


def _check_bytes(data: Any) -> memoryview:
    if isinstance(data, (bytes, bytearray)):
        return memoryview(data)
    if isinstance(data, memoryview):
        return data.cast("B") if data.ndim == 1 and data.contiguous else memoryview(data.tobytes())
    hint = " (encode text first: text.encode())" if isinstance(data, str) else "; use put_value(...) for other values"
    raise ConfigurationError(f"put() stores bytes, not a {type(data).__name__}{hint}")


class TaskStorage:
    """The running task's handle on storage: raw bytes (``put``/``get``/``open``) and
    pickled, signed values (``put_value``/``get_value``), each returning a reference."""

    def __init__(self, task: TaskEvent, store: Storage, signer: Signer) -> None:
        self._task = task
        self._store = store
        self._spec = task.storage
        self._signer = signer
        self._folder = _task_folder(task)
        self._values = itertools.count(1)

    @property
    def folder(self) -> str:
        """The URL of this task attempt's temp folder (where plain names go)."""
        return location_of(self._spec, self._folder + "/")

    # ---- where a name or URL points ---------------------------------------------------------
    def _locate(self, target: str) -> tuple[dict[str, Any], str, bool]:
        """``(storage spec, key, temporary)`` of a plain name or a URL."""
        if "://" not in target:
            return self._spec, f"{self._folder}/{_check_name(target)}", True
        parsed = urlparse(target)
        kind = self._spec.get("kind")
        if parsed.scheme == "s3" and kind == "s3":
            key = parsed.path.lstrip("/")
            if not parsed.netloc or not key or key.endswith("/"):
                raise ConfigurationError(f"{target!r}: give an object URL, s3://bucket/key (not a bucket or a folder)")
            return {**self._spec, "bucket": parsed.netloc}, key, False
        if parsed.scheme == "file" and kind == "local" and parsed.netloc in ("", "localhost"):
            path = os.path.normpath(parsed.path)
            root = str(self._spec["root"]).rstrip("/")
            if path.startswith(root + "/"):
                return self._spec, path[len(root) + 1 :], False
            folder, _, name = path.rpartition("/")
            if not name or not folder:
                raise ConfigurationError(f"{target!r}: give a file URL such as file:///data/out/part-1.bin")
            return {"kind": "local", "root": folder}, name, False
        wanted = "s3://bucket/key" if kind == "s3" else "file:///folder/name"
        raise ConfigurationError(
            f"{target!r}: this job's storage is {kind}, so its tasks reach {wanted} URLs (or plain names, in the "
            "job's temp folder)"
        )

    def _store_of(self, spec: dict[str, Any]) -> Storage:
        return self._store if spec == self._spec else open_cached(spec)

    def _write(self, spec: dict[str, Any], key: str, data: bytes | memoryview) -> None:
        try:
            self._store_of(spec).put(key, data)
        except StoragePermissionError as exc:
            raise StoragePermissionError(f"{exc}{_grant_hint(location_of(spec, key), write=True)}") from None

    # ---- raw bytes -------------------------------------------------------------------------
    def put(self, name: str, data: bytes | bytearray | memoryview) -> ObjectRef:
        """Store raw bytes under a plain name (this task's temp folder) or a URL.

        Returns:
            An ``ObjectRef`` (its size and digest with it) to return or pass to later tasks.

        Raises:
            ConfigurationError: not bytes, a malformed name, a URL of another kind of storage.
            StoragePermissionError: the location is outside what the runtime may write.
        """
        spec, key, temporary = self._locate(name)
        view = _check_bytes(data)
        self._write(spec, key, view)
        return ObjectRef(spec, key, view.nbytes, digest.digest_of(view), temporary)

    def get(self, ref: ObjectRef | str) -> bytes:
        """The bytes of an ``ObjectRef`` (checked against its digest) or of a URL (as stored:
        raw bytes read from a URL carry nothing to check them against)."""
        if isinstance(ref, ObjectRef):
            return ref.get()
        if isinstance(ref, ValueRef):
            raise ConfigurationError("get() reads raw bytes; a ValueRef holds a pickled value: use get_value(ref)")
        if not isinstance(ref, str) or "://" not in ref:
            raise ConfigurationError(f"get({ref!r}): give an ObjectRef or a URL (s3://bucket/key, file:///folder/name)")
        spec, key, _ = self._locate(ref)
        try:
            return self._store_of(spec).get(key)
        except StoragePermissionError as exc:
            raise StoragePermissionError(f"{exc}{_grant_hint(location_of(spec, key), write=False)}") from None

    def open(self, ref: ObjectRef) -> IO[bytes]:
        """An ``ObjectRef``'s bytes as a stream (checked against its digest at the end)."""
        if not isinstance(ref, ObjectRef):
            raise ConfigurationError(f"open() takes an ObjectRef, not {type(ref).__name__}; read a URL with get(url)")
        return ref.open()

    # ---- pickled values --------------------------------------------------------------------
    def put_value(self, value: T, name: str | None = None) -> ValueRef[T]:
        """Pickle ``value``, sign it for this task attempt and its key, and store it under
        ``name`` (default ``value-N.pickle`` in this task's temp folder) or a URL.

        Raises:
            SerializationError: the value cannot be pickled (names the part).
            StoragePermissionError: the location is outside what the runtime may write.
        """
        target = name if name is not None else f"value-{next(self._values)}.pickle"
        spec, key, temporary = self._locate(target)
        task = self._task
        context = task_value_context(task.session, task.job_id, task.task_id, task.attempt, key)
        payload = serialize.dumps(value, what="value given to put_value()", ship_local_modules=False)
        blob = self._signer.sign(payload, context)
        self._write(spec, key, blob)
        return ValueRef(spec, key, len(blob), task.session, task.job_id, task.task_id, task.attempt,
                        self._signer.key_id, temporary)

    def get_value(self, ref: ValueRef[T]) -> T:
        """The value of a ``ValueRef``, once its signature and context check out."""
        if not isinstance(ref, ValueRef):
            raise ConfigurationError(f"get_value() takes a ValueRef, not {type(ref).__name__}; read raw bytes with get()")
        return ref.get()

    def url(self, ref: ObjectRef | ValueRef[Any] | str) -> str:
        """The URL of a reference, or of what a plain name would be stored as."""
        if isinstance(ref, (ObjectRef, ValueRef)):
            return ref.url
        spec, key, _ = self._locate(ref)
        return location_of(spec, key)

    def __repr__(self) -> str:
        return f"TaskStorage(task {self._task.task_id} of job {self._task.job_id}, attempt {self._task.attempt})"


def _grant_hint(location: str, *, write: bool) -> str:
    """On Lambda (whose environment lists the role's grants): the deploy option that grants ``location``."""
    if _GRANTS_ENV not in os.environ or not location.startswith("s3://"):
        return ""
    folder = location.rsplit("/", 1)[0] + "/"
    if write:
        return (
            f"; the function's role writes only its grants ({_GRANTS_ENV}): grant this location with "
            f"`lambdamr deploy --write {folder}` (grants are kept across deploys), or use a plain name for a temp object"
        )
    return (
        f"; the function's role reads only its grants ({_GRANTS_ENV}): grant this location with "
        f"`lambdamr deploy --read {folder}`. If it is granted, the object does not exist (without "
        "s3:ListBucket, S3 answers a missing key with 403)"
    )
