"""``lambdamr teardown | clean | rotate-key``: the commands that delete or replace something.

Each one first lists what it will delete — counts and sizes per prefix, objects lambdamr did
not write named apart — then asks (``confirm``): on a terminal the user answers, ``--yes``
answers for a script, and without either nothing happens. Objects outside lambdamr's own
prefixes (the temp prefix and ``lambdamr-deploy/``) are never deleted unless
``teardown --delete-user-objects`` says so, and a bucket holding them is kept.
"""

from __future__ import annotations

import argparse
from typing import Any

from lambdamr.cli.confirm import YES_FLAG_HELP, confirm
from lambdamr.cli.deploy import common_aws_options, endpoints


def register(subparsers: Any) -> None:
    """Add the destructive subcommands."""
    p = subparsers.add_parser(
        "teardown",
        help="remove what deploy made (and nothing else), after showing the list",
        description="Remove the function, its layer versions and log group, the role, the signing key secret and "
        "lambdamr's objects — only what deploy made. The bucket goes too, unless it holds objects lambdamr did not "
        "write (map_reduce output under a --write grant, say): those and the bucket are kept unless "
        "--delete-user-objects.",
    )
    common_aws_options(p)
    p.add_argument("--bucket", help="the bucket deploy used (default: the function's, or lambdamr-ACCOUNT-REGION)")
    p.add_argument("--prefix", default="lambdamr", help="the temp prefix deploy was given")
    p.add_argument("--keep-bucket", action="store_true", help="keep the bucket and every object in it")
    p.add_argument(
        "--delete-user-objects",
        action="store_true",
        help="also delete the objects lambdamr did not write, and then the bucket (only in a bucket deploy created)",
    )
    p.add_argument(
        "--delete-key-now",
        action="store_true",
        help="delete the signing key's secret without Secrets Manager's 7-day recovery window",
    )
    p.add_argument("--yes", action="store_true", help=YES_FLAG_HELP)
    p.set_defaults(func=_teardown)

    p = subparsers.add_parser(
        "clean",
        help="delete temp objects left by jobs whose driver is gone (live drivers' objects are kept)",
        description="Delete the objects under the temp prefix that no live driver owns, after listing them by "
        "session. Nothing outside the temp prefix is touched, except that the job history beside it "
        "({prefix}-history/) is pruned to its bounds (LAMBDAMR_HISTORY_MAX_JOBS, LAMBDAMR_HISTORY_MAX_AGE_DAYS), "
        "and this host's scratch folders of big buffers left by local drivers that are gone are removed "
        "(in LAMBDAMR_BUFFER_FOLDER, else /dev/shm). "
        "Without --bucket, --region or an AWS region in the "
        "environment it cleans the local storage "
        "folder (LAMBDAMR_STORAGE, else the default one).",
    )
    common_aws_options(p)
    p.add_argument("--bucket", help="(default: the function's bucket, or lambdamr-ACCOUNT-REGION)")
    p.add_argument(
        "--storage",
        metavar="FOLDER",
        help="clean a local storage folder (no AWS needed) instead (default: the bucket, or the local folder "
        "when no AWS region is configured)",
    )
    p.add_argument("--prefix", default="lambdamr", help="the executors' temp prefix")
    p.add_argument("--older-than", type=float, default=0.0, metavar="HOURS", help="only objects older than this")
    p.add_argument("--yes", action="store_true", help=YES_FLAG_HELP)
    p.set_defaults(func=_clean)

    p = subparsers.add_parser(
        "rotate-key",
        help="replace the deployment's signing key (running jobs fail)",
        description="Store a new signing key in the deployment's secret (the old one stays as AWSPREVIOUS) and "
        "point the function at it. Jobs running now fail, and durable jobs signed with the old key can no longer "
        "be attached.",
    )
    common_aws_options(p)
    p.add_argument("--yes", action="store_true", help=YES_FLAG_HELP)
    p.set_defaults(func=_rotate_key)


def _print_list(title: str, items: list[str]) -> None:
    if items:
        print(title)
        for item in items:
            print(f"  - {item}")


def _teardown(args: argparse.Namespace) -> int:
    from lambdamr.deploy import teardown

    kwargs: dict[str, Any] = {
        "region": args.region,
        "function_name": args.function_name,
        "bucket": args.bucket,
        "prefix": args.prefix,
        "keep_bucket": args.keep_bucket,
        "delete_key_now": args.delete_key_now,
        "delete_user_objects": args.delete_user_objects,
        **endpoints(args),
    }
    preview = teardown(dry_run=True, **kwargs)
    _print_list("lambdamr teardown will delete:", preview["removed"])
    _print_list("and keep:", preview["kept"])
    if not preview["removed"]:
        print("nothing to remove")
        return 0
    if not confirm(f"Delete these {len(preview['removed'])} items?", yes=args.yes, command=args.command_line):
        print("nothing deleted")
        return 1
    result = teardown(**kwargs)
    for item in result["removed"]:
        print(f"removed {item}")
    for item in result["kept"]:
        print(f"kept {item}")
    return 0


def _clean(args: argparse.Namespace) -> int:
    from lambdamr.deploy import clean, clean_preview
    from lambdamr.deploy.contents import group_by_session, human_size, plural

    if args.storage or _no_aws_named(args):
        return _clean_folder(args)
    older_than_s = args.older_than * 3600
    common = {
        "region": args.region,
        "function_name": args.function_name,
        "bucket": args.bucket,
        "prefix": args.prefix,
        "older_than_s": older_than_s,
        **endpoints(args),
    }
    bucket, objects = clean_preview(**common)
    location = f"s3://{bucket}/{args.prefix}/"
    scratch = _StaleScratch()
    if not objects and not scratch.folders:
        print(f"nothing to delete under {location} (sessions of live drivers are kept)")
        return 0
    if objects:
        total = sum(size for _, size in objects)
        _print_list(
            f"lambdamr clean will delete {plural(len(objects), 'object')} ({human_size(total)}) under {location}, "
            "left by drivers that are gone, and of the job history what lies past its bounds (nothing else is touched):",
            [usage.describe(f"s3://{bucket}") for usage in group_by_session(bucket, objects, args.prefix).usages],
        )
    scratch.describe(after_objects=bool(objects))
    if not confirm(_question(len(objects), scratch), yes=args.yes, command=args.command_line):
        print("nothing deleted")
        return 1
    if objects:
        count = clean(only={key for key, _ in objects}, **common)
        print(f"deleted {count} temp objects")
    scratch.delete()
    return 0


class _StaleScratch:
    """This host's scratch folders (big buffers in RAM) left by local drivers that are gone."""

    def __init__(self) -> None:
        from lambdamr.backends.local_options import LocalOptions
        from lambdamr.storage.scratch import stale_folders

        self.base = LocalOptions.resolve().scratch_base()  # LAMBDAMR_BUFFER_FOLDER, else /dev/shm
        self.folders = stale_folders(self.base) if self.base else []

    def describe(self, *, after_objects: bool) -> None:
        from lambdamr.deploy.contents import human_size, plural

        if self.folders:
            lead = "and" if after_objects else "lambdamr clean will delete"
            what = plural(len(self.folders), "scratch folder")
            _print_list(
                f"{lead} {what} of big buffers in {self.folders[0].path.parent}, left by local drivers that are gone:",
                [f"{folder.path.name} ({human_size(folder.size)})" for folder in self.folders],
            )

    def delete(self) -> None:
        from lambdamr.deploy.contents import plural
        from lambdamr.storage.scratch import sweep_stale

        if self.base and self.folders:
            count = sweep_stale(self.base, only={folder.path.name for folder in self.folders})  # one held again is spared
            print(f"deleted {plural(count, 'scratch folder')} in {self.folders[0].path.parent}")


def _question(objects: int, scratch: _StaleScratch) -> str:
    from lambdamr.deploy.contents import plural

    parts = [plural(objects, "object")] if objects else []
    if scratch.folders:
        parts.append(plural(len(scratch.folders), "scratch folder"))
    return f"Delete these {' and '.join(parts)}?"


def _no_aws_named(args: argparse.Namespace) -> bool:
    """No bucket, endpoint or region anywhere: the user means the local storage folder."""
    from lambdamr.aws_region import resolve_region

    if args.bucket or args.endpoint_url or args.region:
        return False
    try:
        return resolve_region(None) is None
    except Exception:  # a broken AWS profile: there is nothing on AWS to clean either
        return True


def _clean_folder(args: argparse.Namespace) -> int:
    from lambdamr.config import ExecutorConfig
    from lambdamr.deploy.contents import group_by_session, human_size, plural
    from lambdamr.driver.history import HistoryPolicy, keys_to_prune, list_history_folder
    from lambdamr.driver.lease import keys_to_clean
    from lambdamr.errors import ConfigurationError
    from lambdamr.storage import storage_from_url

    folder = args.storage or ExecutorConfig.resolve().storage_url  # LAMBDAMR_STORAGE, else the default folder
    store, base = storage_from_url(folder)
    if store.kind != "local":
        raise ConfigurationError(
            f"storage {folder!r} is not a local folder: for S3 give --bucket (and --region), or --storage FOLDER"
        )
    prefix = "/".join(p for p in (base, args.prefix.strip("/")) if p)
    older_than_s = args.older_than * 3600

    def cleanable() -> dict[str, int]:
        listing = [info for info in store.list(prefix + "/") if info.modified is not None]
        doomed = set(keys_to_clean([(i.key, float(i.modified or 0)) for i in listing], prefix, older_than_s=older_than_s))
        doomed.update(keys_to_prune(list_history_folder(store, prefix), HistoryPolicy.from_env()))  # past its bounds
        return {i.key: i.size for i in listing if i.key in doomed}

    objects = cleanable()
    scratch = _StaleScratch()
    if not objects and not scratch.folders:
        print(f"nothing to delete under {store.url(prefix)} (sessions of live drivers and the job history are kept)")
        return 0
    if objects:
        root = store.url("").rstrip("/")
        _print_list(
            f"lambdamr clean will delete {plural(len(objects), 'object')} ({human_size(sum(objects.values()))}) "
            f"under {store.url(prefix)}, left by drivers that are gone:",
            [u.describe(root) for u in group_by_session(root, objects.items(), prefix).usages],
        )
    scratch.describe(after_objects=bool(objects))
    if not confirm(_question(len(objects), scratch), yes=args.yes, command=args.command_line):
        print("nothing deleted")
        return 1
    if objects:
        keys = [key for key in cleanable() if key in objects]  # a session that came back to life is spared
        if keys:
            store.delete(keys)
        print(f"deleted {len(keys)} temp objects under {store.url(prefix)}")
    scratch.delete()
    return 0


def _rotate_key(args: argparse.Namespace) -> int:
    from lambdamr.deploy import rotate_key, status
    from lambdamr.errors import ConfigurationError

    report = status(region=args.region, function_name=args.function_name, **endpoints(args))
    if not report["deployed"]:
        raise ConfigurationError(f"{args.function_name}: {report['problem']}")
    secret = report.get("signing_key_secret")
    if not secret:
        raise ConfigurationError(
            f"the function {args.function_name!r} keeps no signing key in Secrets Manager yet: run `lambdamr deploy` first"
        )
    _print_list(
        f"lambdamr rotate-key will replace the signing key of {args.function_name} in {report['region']}:",
        [
            f"secret {secret}: a new current key; the old one stays as AWSPREVIOUS, no longer used",
            f"function {args.function_name}: its configuration names the new key; versions "
            f"{', '.join(report['versions']) or '-'} are re-published by the next job that uses them",
            "jobs running now fail (IntegrityError), and durable jobs signed with the old key can no longer be attached",
        ],
    )
    if not confirm("Rotate the signing key?", yes=args.yes, command=args.command_line):
        print("signing key not rotated")
        return 1
    rotated = rotate_key(region=args.region, function_name=args.function_name, **endpoints(args))
    print(f"rotated the signing key of {args.function_name}: secret {rotated.arn}, version {rotated.version_id}")
    return 0
