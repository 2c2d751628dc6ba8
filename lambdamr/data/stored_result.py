"""A call's return value left in its signed result record, read by the task that takes it.

A pipelined call (``driver/pipeline.py``) whose upstream call's result record is in storage
(fire-and-forget Lambda, durable jobs: every record is stored) carries a ``StoredResult`` in
its arguments instead of the value. Unpickling the arguments in the runtime reads the record
and checks it as the driver would: its signature against the context the reference names (a
result, of that session, job, task, attempt and key — the reference itself arrived in the
task's signed arguments), the header's job, task and attempt, and that the call returned; only
then is that one call's value unpickled. Nothing unsigned is loaded, and the value does not
travel from the driver into the downstream call's arguments.
"""

from __future__ import annotations

from typing import Any

from lambdamr import serialize
from lambdamr.errors import IntegrityError, ObjectNotFound, SerializationError
from lambdamr.protocol import call_outcomes, decode_result, result_context
from lambdamr.signing import Signer, process_key
from lambdamr.storage import open_cached


class StoredResult:
    """Call ``index`` of a task attempt's result record at ``key``: unpickled as its value."""

    __slots__ = ("storage_spec", "key", "job_id", "task_id", "attempt", "index")

    def __init__(self, storage_spec: dict[str, Any], key: str, job_id: str, task_id: int, attempt: int, index: int) -> None:
        self.storage_spec = storage_spec
        self.key = key
        self.job_id = job_id
        self.task_id = task_id
        self.attempt = attempt
        self.index = index

    def __reduce__(self) -> tuple[Any, ...]:
        return (load_stored_result, (self.storage_spec, self.key, self.job_id, self.task_id, self.attempt, self.index))

    def __repr__(self) -> str:
        return f"StoredResult(job={self.job_id} task={self.task_id} attempt={self.attempt} call={self.index})"


def load_stored_result(storage_spec: dict[str, Any], key: str, job_id: str, task_id: int, attempt: int, index: int) -> Any:
    """The value of call ``index`` in the record at ``key``, once the record verifies.

    Raises:
        IntegrityError: the record is unsigned, modified, or another attempt's.
        SerializationError: the record is gone, or the call did not return a value.
    """
    what = f"result of task {task_id} (attempt {attempt}) of job {job_id}, an argument of this call"
    try:
        data = open_cached(storage_spec).get(key)
    except ObjectNotFound:
        raise SerializationError(f"the {what} is gone from storage (deleted before this call ran)") from None
    payload = Signer(process_key()).verify(data, result_context(job_id, task_id, attempt, key), what=what)
    header, frames = decode_result(payload)
    found = (header.get("job_id"), header.get("task_id"), header.get("attempt"))
    if found != (job_id, task_id, attempt):
        raise IntegrityError(f"refusing the {what}: its header names job {found[0]!r} task {found[1]!r} attempt {found[2]!r}")
    outcomes = call_outcomes(header)
    if header.get("task_error") or index >= len(outcomes) or not outcomes[index].ok:
        raise SerializationError(f"the {what} holds no value for call {index}")
    return serialize.loads(frames[index], what=what)
