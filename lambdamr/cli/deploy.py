"""``lambdamr deploy | status | teardown | clean``: the AWS deployment commands."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..deploy.layer import BASE_PACKAGES
from ..deploy.options import ARCHITECTURES, LAMBDA_PYTHONS


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--region", help="AWS region (default: AWS_REGION or the profile's)")
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
    p.add_argument("--python-version", choices=LAMBDA_PYTHONS, help="Lambda Python runtime (default: this interpreter's)")
    p.add_argument(
        "--package",
        action="append",
        default=[],
        metavar="NAME",
        help=f"extra package for the layer, repeatable (always: {', '.join(BASE_PACKAGES)})",
    )
    p.add_argument("--prefix", default="lambdamr", help="key prefix the runtime may use (default: %(default)s)")
    p.set_defaults(func=_deploy)

    p = subparsers.add_parser("status", help="what is deployed, and whether it matches this driver")
    _common(p)
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=_status)

    p = subparsers.add_parser("teardown", help="remove what deploy made (and nothing else)")
    _common(p)
    p.add_argument("--bucket", help="the bucket deploy used (default: the function's, or lambdamr-ACCOUNT-REGION)")
    p.add_argument("--prefix", default="lambdamr")
    p.add_argument("--keep-bucket", action="store_true", help="keep the bucket and its objects")
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
        **_endpoints(args),
    )
    print(report)
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
