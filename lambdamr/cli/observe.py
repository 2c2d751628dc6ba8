"""``lambdamr jobs`` and ``lambdamr logs JOB_ID [TASK]``: what ran, and what it printed.

Both read the configured storage: the one an executor with the same settings would use
(``--storage``, else ``LAMBDAMR_STORAGE``, else the backend's default) — the job history
(``lambdamr.driver.history``), which outlives the executors, and the manifests of jobs whose
objects are still there (``lambdamr.driver.jobstore``: running, or kept with ``keep_temp``).

Storage is untrusted here as everywhere: only manifests, logs and result records that verify
with the deployment's key, for the job and task they are shown as, are printed (the rest are
skipped with a warning), and nothing read from storage reaches the terminal unescaped — a
task that printed ``ESC [ 2 J`` shows ``\x1b[2J``, not a cleared screen.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Iterator
from typing import Any

from lambdamr.driver.history_reader import list_history, read_history_logs, read_record
from lambdamr.driver.jobstore import find_job, list_jobs, read_task_logs
from lambdamr.driver.lease import LEASE_NAME, LEASE_TTL_S
from lambdamr.errors import ObjectNotFound
from lambdamr.report import task_header
from lambdamr.runtime.capture import log_tail
from lambdamr.signing import Signer

#: C0 controls but tab and newline, DEL, and C1 controls: what a terminal may act on
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with every control character but newline and tab escaped (ESC -> ``\\x1b``)."""
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def storage_options(parser: argparse.ArgumentParser) -> None:
    """``--storage``, ``--backend``, ``--prefix``, ``--region``: which storage an executor would use."""
    parser.add_argument(
        "--storage", help="storage URL: s3://BUCKET/prefix or a folder (default: LAMBDAMR_STORAGE, else the backend's)"
    )
    parser.add_argument("--backend", help="backend whose default storage to use (default: LAMBDAMR_BACKEND, else local)")
    parser.add_argument("--prefix", help="key prefix of the executor (default: LAMBDAMR_PREFIX, else lambdamr)")
    parser.add_argument("--region", help="AWS region (default: AWS_REGION)")
    parser.add_argument("--endpoint-url", help=argparse.SUPPRESS)  # S3-compatible endpoint (tests, MinIO)


def register(subparsers: Any) -> None:
    """Add the ``jobs`` and ``logs`` subcommands."""
    p = subparsers.add_parser("jobs", help="list the jobs in storage: the job history, running jobs, kept ones")
    storage_options(p)
    p.add_argument("--limit", type=int, default=20, metavar="N", help="newest N jobs (default: %(default)s; 0 = all)")
    p.add_argument("--json", action="store_true", help="print the manifests as JSON")
    p.set_defaults(func=_jobs)

    p = subparsers.add_parser("logs", help="print what a job's tasks printed or logged")
    p.add_argument("job_id", metavar="JOB_ID", help="as listed by `lambdamr jobs`")
    p.add_argument(
        "task", metavar="TASK", type=int, nargs="?", help="one task's number (default: every task that printed or failed)"
    )
    storage_options(p)
    p.add_argument("--tail", type=int, default=0, metavar="N", help="only the last N lines of each task")
    p.set_defaults(func=_logs)


def _config(args: argparse.Namespace) -> Any:
    from lambdamr.config import ExecutorConfig

    return ExecutorConfig.resolve(
        backend=args.backend, storage=args.storage, prefix=args.prefix, region=args.region, endpoint_url=args.endpoint_url
    )


def open_configured_storage(args: argparse.Namespace) -> tuple[Any, str]:
    """The store and key prefix an executor with these settings would use."""
    from lambdamr.backends import backend_class
    from lambdamr.storage import storage_from_url

    config = _config(args)
    url = config.storage or backend_class(config.backend).default_storage_url(config) or config.storage_url
    storage, base = storage_from_url(url, region=config.region, endpoint_url=config.endpoint_url)
    return storage, "/".join(p for p in (base, config.prefix) if p)


def configured_signer(args: argparse.Namespace, storage: Any) -> Signer:
    """The signing key an executor with these settings would verify its records with."""
    from lambdamr.backends import backend_class

    config = _config(args)
    return Signer(backend_class(config.backend).from_config(config, storage).signing_key())


def stored_jobs(storage: Any, prefix: str, signer: Signer, limit: int = 0) -> list[dict[str, Any]]:
    """Every job storage knows, newest first: the job history's records, and the manifests
    of kept or running jobs it does not hold (history off, an older driver). A manifest
    left ``running`` by a driver whose session lease lapsed is shown ``abandoned``."""
    records = {doc["job_id"]: doc for doc in list_history(storage, prefix, signer, limit=limit)}
    for doc in list_jobs(storage, prefix, signer):
        job_id = str(doc.get("job_id"))
        known = records.get(job_id)
        if known is not None:
            if known.get("state") == "running" and doc.get("state") not in ("running", None):
                records[job_id] = doc  # the manifest's last write landed before the history's
            continue
        if doc.get("state") == "running" and not _lease_is_fresh(storage, str(doc.get("prefix", ""))):
            doc["state"] = "abandoned"
        records[job_id] = doc
    jobs = sorted(records.values(), key=lambda doc: doc.get("submitted") or 0, reverse=True)
    return jobs[:limit] if limit > 0 else jobs


def _lease_is_fresh(storage: Any, job_prefix: str) -> bool:
    session = job_prefix.rsplit("/", 1)[0]
    leases = [i for i in storage.list(f"{session}/{LEASE_NAME}") if i.key == f"{session}/{LEASE_NAME}"]
    return any(i.modified is not None and time.time() - i.modified < LEASE_TTL_S for i in leases)


def _jobs(args: argparse.Namespace) -> int:
    storage, prefix = open_configured_storage(args)
    jobs = stored_jobs(storage, prefix, configured_signer(args, storage), args.limit)
    if args.json:
        print(json.dumps(jobs, indent=2, default=str))
        return 0
    if not jobs:
        print(
            f"no jobs under {storage.url(prefix)}: no executor used this storage and prefix, or "
            "LAMBDAMR_HISTORY_MAX_JOBS=0 kept no history"
        )
        return 0
    print(printable(format_jobs(jobs)))
    return 0


def format_jobs(jobs: list[dict[str, Any]]) -> str:
    """A table of job manifests, one line each."""
    header = ("JOB", "STATE", "SUBMITTED", "TASKS", "FAILED", "WALL", "COST", "BACKEND", "FUNCTION")
    rows = [header]
    for doc in jobs:
        summary = doc.get("summary") or {}
        submitted = doc.get("submitted")
        wall = summary.get("wall_s")
        cost = summary.get("cost_usd")
        rows.append((
            str(doc.get("job_id", "?")),
            str(doc.get("state", "?")),
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(submitted)) if submitted else "?",
            f"{doc.get('tasks', 0):,}",
            "" if doc.get("state") == "running" else f"{summary.get('failed', 0):,}",
            "" if wall is None else f"{wall * 1000:.0f} ms" if wall < 1 else f"{wall:.1f} s",
            "" if cost is None else f"${cost:.6f}".rstrip("0").rstrip("."),
            str(doc.get("backend", "")),
            str(doc.get("function", "")),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1] for row in rows
    )


def job_log_entries(
    storage: Any, prefix: str, job_id: str, task: int | None, signer: Signer
) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
    """A job's manifest or history record, and its tasks' output: from the job's own objects
    while they exist (a running or kept job), else from the job history.

    Raises:
        ObjectNotFound: neither the job's objects nor its history record are in storage.
    """
    try:
        manifest = find_job(storage, prefix, job_id, signer)
    except ObjectNotFound as missing:
        try:
            record = read_record(storage, prefix, job_id, signer)
        except ObjectNotFound:
            raise missing from None
        kept = read_history_logs(storage, prefix, job_id, signer) or {}
        entries = (
            {"task_id": int(key), **kept[key]}
            for key in sorted((k for k in kept if k.isdigit() and isinstance(kept[k], dict)), key=int)
            if task is None or int(key) == task
        )
        return record, entries
    return manifest, read_task_logs(storage, manifest, task, signer)


def _logs(args: argparse.Namespace) -> int:
    storage, prefix = open_configured_storage(args)
    signer = configured_signer(args, storage)
    manifest, entries = job_log_entries(storage, prefix, args.job_id, args.task, signer)
    printed = 0
    for entry in entries:
        text = entry.get("logs") or ""
        if args.tail > 0:
            text = log_tail(text, lines=args.tail, chars=sys.maxsize)
        timings: dict[str, Any] = {k: entry[k] for k in ("started", "finished", "cold") if k in entry}
        print(printable(task_header(entry["task_id"], entry.get("attempt", 0), timings, entry.get("error"))))
        if text:
            print(printable(text.rstrip("\n")))
        printed += 1
    if not printed:
        which = f"task {args.task} of job {args.job_id}" if args.task is not None else f"job {args.job_id}"
        state = printable(str(manifest.get("state", "?")))
        print(f"no output from {which} ({state}): its tasks printed nothing, or their results are not stored yet")
    return 0
