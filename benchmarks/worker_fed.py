"""A local worker's own CPU per task, when it never waits on the driver.

    PYTHONPATH=. python benchmarks/worker_fed.py                 # 20,000 empty tasks, 3 rounds
    PYTHONPATH=. python benchmarks/worker_fed.py --tasks 50000 --per-frame 16

``benchmarks/overhead.py`` measures the workers inside a whole map, where they wait on the
driver between frames (each wake-up costs the worker a ``recv``, a ``poll``, a ``send`` and
cold caches). This script takes the driver out: one real worker process
(``python -m lambdamr.backends.local_worker``, the runtime and records of every task as
always) is sent TASKS frames encoded beforehand, by a thread of this process, as fast as it
takes them, and its DONE frames are read and checked. What it prints is the worker's CPU per
task (``/proc/PID/stat``, start-up not counted) and its wall time per task: the floor of the
worker's cost on the local wire. Nothing is written but a temp folder, deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lambdamr import serialize  # noqa: E402 - after the path of this checkout
from lambdamr.backends import local_wire as wire  # noqa: E402
from lambdamr.backends.local_worker import LOW_WATER_ENV  # noqa: E402
from lambdamr.protocol import TaskEvent, arguments_context, function_context  # noqa: E402
from lambdamr.signing import KEY_ENV, Signer, content_hash, new_key_hex, parse_key  # noqa: E402
from lambdamr.storage.local import LocalStorage  # noqa: E402

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_SESSION = "20261201-000000-abcdef"
_JOB = f"{_SESSION}-0001"


def identity(x: object) -> object:
    return x


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def measure(tasks: int, per_frame: int = 8) -> dict[str, float]:
    """Feed one worker ``tasks`` empty tasks, ``per_frame`` to a TASKS frame; its CPU and wall time per task."""
    folder = tempfile.mkdtemp(prefix="lambdamr-worker-fed-")
    key = parse_key(new_key_hex())
    signer = Signer(key)
    store = LocalStorage(folder)
    payload = serialize.dumps(identity, what="function")
    function_key = f"p/{_SESSION}/fn/{content_hash(payload)}"
    store.put(function_key, signer.sign(payload, function_context(_SESSION, function_key)))

    def event(task_id: int) -> TaskEvent:
        return TaskEvent(
            job_id=_JOB, task_id=task_id, attempt=1, storage=store.spec(), function_key=function_key,
            result_key=f"p/{_SESSION}/0001/results/{task_id:06d}.1", timeout_s=30, memory_mb=512,
            store_result=False, reply_inline_max=1 << 20,
        )

    frames = [wire.encode_job(0, event(0))]
    for start in range(0, tasks, per_frame):
        frames.append(wire.encode_tasks([
            (task_id, 0, event(task_id), signer.sign(serialize.dumps([((task_id,), {})]), arguments_context(_JOB, task_id, None)))
            for task_id in range(start, min(tasks, start + per_frame))
        ]))
    ours, theirs = socket.socketpair()
    env = {**os.environ, KEY_ENV: key.hex(), LOW_WATER_ENV: str(max(1, per_frame // 2)),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]))}
    worker = subprocess.Popen(
        [sys.executable, "-m", "lambdamr.backends.local_worker", str(theirs.fileno()), "fed"],
        pass_fds=[theirs.fileno()], env=env,
    )
    theirs.close()
    try:
        reader = wire.FrameReader(ours)
        if bytes(reader.read()[:1]) != wire.READY:
            raise RuntimeError("the worker did not start")
        cpu_before = _cpu_seconds(worker.pid)
        started = time.perf_counter()
        sender = threading.Thread(target=lambda: [wire.send_parts(ours, f) for f in frames], daemon=True)
        sender.start()
        settled = 0
        while settled < tasks:
            entries = wire.decode_done(key, reader.read())
            if any(done.kind != wire.RECORD or not done.flags & wire.FLAG_OK for done in entries):
                raise RuntimeError(f"a task failed in the worker: {entries}")
            settled += len(entries)
        wall = time.perf_counter() - started
        cpu = _cpu_seconds(worker.pid) - cpu_before
        sender.join()
    finally:
        ours.close()
        worker.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)
    return {"worker_fed_us_per_task": cpu / tasks * 1e6, "worker_fed_wall_us_per_task": wall / tasks * 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000, help="empty tasks per round (default 20000)")
    parser.add_argument("--per-frame", type=int, default=8, help="tasks per TASKS frame (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is printed (default 3)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    rounds = []
    for number in range(args.rounds):
        figures = measure(args.tasks, args.per_frame)
        rounds.append(figures)
        print(f"  round {number + 1}: " + ", ".join(f"{k} {v:.1f}" for k, v in figures.items()), flush=True)
    for key in rounds[0]:
        print(f"median {key}: {statistics.median(r[key] for r in rounds):.1f}")
    print(f"load average (1 min) before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
