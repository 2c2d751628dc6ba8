"""``lambdamr deploy | status | teardown | clean``: the AWS deployment commands."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..deploy.layer import BASE_PACKAGES
from ..deploy.options import ARCHITECTURES
from ..deploy.runtimes import LAMBDA_PYTHONS


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--region", help="AWS region (default: AWS_REGION, then AWS_DEFAULT_REGION, then the profile's)")
    parser.add_argument("--function-name", default="lambdamr-runtime", help="Lambda function name (default: %(default)s)")
    parser.add_argument("--endpoint-url", help=argparse.SUPPRESS)  # one endpoint for all services (tests)
    parser.add_argument("--lambda-endpoint-url", help=argparse.SUPPRESS)


def _endpoints(args: argparse.Namespace) -> dict[str, Any]:
    return {"endpoint_url": args.endpoint_url, "lambda_endpoint_url": args.lambda_endpoint_url}


def register(subparsers: Any) -> None:
    """Add the deployment subcommands."""
    p = subparsers.add_parser("deploy", help="create or update the bucket, role, layer and function (idempotent)")
    _common(p)
    p.add_argument("--bucket", help="S3 bucket for task data (default: lambdamr-ACCOUNT-REGION)")
    p.add_argument(
        "--memory", type=int, default=1024, metavar="MB", help="default memory per task, 128-10240 (default: %(default)s)"
    )
    p.add_argument("--timeout", type=int, default=300, metavar="S", help="default task timeout, 1-900 s (default: %(default)s)")
    p.add_argument("--architecture", choices=ARCHITECTURES, default="x86_64", help="(default: %(default)s)")
    p.add_argument(
        "--python-version",
        choices=LAMBDA_PYTHONS,
        help="Lambda Python runtime; 3.10 and 3.11 run on Amazon Linux 2 (glibc 2.26), 3.12+ on Amazon Linux 2023 "
        "(glibc 2.34) (default: this interpreter's, which the driver must match)",
    )
    p.add_argument(
        "--package",
        action="append",
        default=[],
        metavar="NAME",
        help=f"extra package for the layer, repeatable (always: {', '.join(BASE_PACKAGES)})",
    )
    p.add_argument("--prefix", default="lambdamr", help="key prefix the runtime may use (default: %(default)s)")
    p.add_argument(
        "--read",
        action="append",
        default=[],
        metavar="S3_URL",
        help="let the runtime read objects under this prefix (objects() inputs), repeatable; grants are kept across deploys",
    )
    p.add_argument(
        "--write",
        action="append",
        default=[],
        metavar="S3_URL",
        help="let the runtime write objects under this prefix (map_reduce output), repeatable",
    )
    p.add_argument("--revoke", action="append", default=[], metavar="S3_URL", help="remove a --read/--write grant, repeatable")
    p.set_defaults(func=_deploy)

    p = subparsers.add_parser("rotate-key", help="replace the deployment's signing key (running jobs fail)")
    _common(p)
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation (needed when not on a terminal)")
    p.set_defaults(func=_rotate_key)

    p = subparsers.add_parser("status", help="what is deployed, and whether it matches this driver")
    _common(p)
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=_status)

    p = subparsers.add_parser("teardown", help="remove what deploy made (and nothing else)")
    _common(p)
    p.add_argument("--bucket", help="the bucket deploy used (default: the function's, or lambdamr-ACCOUNT-REGION)")
    p.add_argument("--prefix", default="lambdamr")
    p.add_argument("--keep-bucket", action="store_true", help="keep the bucket and its objects")
    p.add_argument(
        "--delete-key-now",
        action="store_true",
        help="delete the signing key's secret without Secrets Manager's 7-day recovery window",
    )
    p.set_defaults(func=_teardown)

    p = subparsers.add_parser(
        "clean", help="delete temp objects left by jobs whose driver is gone (live drivers' objects are kept)"
    )
    _common(p)
    p.add_argument("--bucket", help="(default: the function's bucket)")
    p.add_argument(
        "--storage", metavar="FOLDER", help="clean a local storage folder instead of the bucket (no AWS needed)"
    )
    p.add_argument("--prefix", default="lambdamr")
    p.add_argument("--older-than", type=float, default=0.0, metavar="HOURS", help="only objects older than this")
    p.set_defaults(func=_clean)


def _deploy(args: argparse.Namespace) -> int:
    from ..deploy import deploy

    report = deploy(
        region=args.region,
        bucket=args.bucket,
        function_name=args.function_name,
        memory_mb=args.memory,
        timeout_s=args.timeout,
        architecture=args.architecture,
        python_version=args.python_version,
        packages=args.package,
        prefix=args.prefix,
        reads=args.read,
        writes=args.write,
        revoke=args.revoke,
        **_endpoints(args),
    )
    print(report)
    return 0


def _rotate_key(args: argparse.Namespace) -> int:
    import sys

    from ..deploy import rotate_key
    from ..errors import ConfigurationError

    warning = (
        f"rotating the signing key of {args.function_name}: jobs running now fail, and durable jobs "
        "signed with the old key can no longer be attached"
    )
    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigurationError(f"{warning}; not on a terminal, so pass --yes to confirm")
        if input(f"{warning}. Rotate? [y/N] ").strip().lower() not in ("y", "yes"):
            print("signing key not rotated")
            return 1
    secret = rotate_key(region=args.region, function_name=args.function_name, **_endpoints(args))
    print(f"rotated the signing key of {args.function_name}: secret {secret.arn}, version {secret.version_id}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from ..deploy import status

    report = status(region=args.region, function_name=args.function_name, **_endpoints(args))
    if args.json:
        print(json.dumps(report, indent=2))
    elif not report["deployed"]:
        print(f"{args.function_name}: not deployed in {report['region']}\n  {report['problem']}")
    else:
        runtime = report["runtime"]
        print(
            f"{args.function_name} in {report['region']}: {report['state']}, {report['architecture']}, "
            f"{report['memory_mb']} MB, {report['timeout_s']} s"
        )
        print(f"  runtime: lambdamr {runtime['lambdamr']}, Python {runtime['python']}, protocol {runtime['protocol']}")
        print(f"  driver:  lambdamr {report['driver']['lambdamr']}, Python {report['driver']['python']}")
        print(f"  storage: {report['storage']}")
        print(f"  versions: {', '.join(report['versions']) or '-'}")
        if report.get("grants"):
            print(f"  reads:  {', '.join(report['grants']['read'])}")
            print(f"  writes: {', '.join(report['grants']['write'])}")
        print("  compatible: yes" if report["compatible"] else f"  compatible: NO: {report['problem']}")
    return 0 if report.get("compatible") else 1


def _teardown(args: argparse.Namespace) -> int:
    from ..deploy import teardown

    result = teardown(
        region=args.region,
        function_name=args.function_name,
        bucket=args.bucket,
        prefix=args.prefix,
        keep_bucket=args.keep_bucket,
        delete_key_now=args.delete_key_now,
        **_endpoints(args),
    )
    for item in result["removed"]:
        print(f"removed {item}")
    for item in result["kept"]:
        print(f"kept {item}")
    if not result["removed"]:
        print("nothing to remove")
    return 0


def _clean(args: argparse.Namespace) -> int:
    if args.storage:
        return _clean_folder(args)
    from ..deploy import clean

    count = clean(
        region=args.region,
        function_name=args.function_name,
        bucket=args.bucket,
        prefix=args.prefix,
        older_than_s=args.older_than * 3600,
        **_endpoints(args),
    )
    print(f"deleted {count} temp objects")
    return 0


def _clean_folder(args: argparse.Namespace) -> int:
    from ..errors import ConfigurationError
    from ..lease import clean_storage
    from ..storage import storage_from_url

    store, base = storage_from_url(args.storage)
    if store.kind != "local":
        raise ConfigurationError(f"--storage {args.storage!r}: give a local folder; for S3 use --bucket")
    prefix = "/".join(p for p in (base, args.prefix.strip("/")) if p)
    count = clean_storage(store, prefix, older_than_s=args.older_than * 3600)
    print(f"deleted {count} temp objects under {store.url(prefix)}")
    return 0
