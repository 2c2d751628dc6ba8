"""``lambdamr deploy | plan | policies | status``: setting up the AWS deployment, and seeing
what it is or would be. (``teardown``, ``clean`` and ``rotate-key`` are in ``cleanup.py``.)

``deploy --plan`` (also ``lambdamr plan``) prints every resource deploy would create or
change, with each policy document in full, and what the deployment costs at rest — from
read calls only. ``deploy`` prints the same plan, then each change as it is made, then a
summary. ``policies`` prints only the policy documents, for a security review.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from lambdamr.deploy.layer import BASE_PACKAGES
from lambdamr.deploy.options import ARCHITECTURES
from lambdamr.deploy.runtimes import LAMBDA_PYTHONS, driver_python


def common_aws_options(parser: argparse.ArgumentParser) -> None:
    """``--region``, ``--function-name`` and the hidden test endpoints, for every AWS command."""
    parser.add_argument("--region", help="AWS region (default: AWS_REGION, then AWS_DEFAULT_REGION, then the profile's)")
    parser.add_argument("--function-name", default="lambdamr-runtime", help="Lambda function name")
    parser.add_argument("--endpoint-url", help=argparse.SUPPRESS)  # one endpoint for all services (tests)
    parser.add_argument("--lambda-endpoint-url", help=argparse.SUPPRESS)


def endpoints(args: argparse.Namespace) -> dict[str, Any]:
    return {"endpoint_url": args.endpoint_url, "lambda_endpoint_url": args.lambda_endpoint_url}


def _deployment_options(p: argparse.ArgumentParser) -> None:
    common_aws_options(p)
    p.add_argument("--bucket", help="S3 bucket for task data (default: lambdamr-ACCOUNT-REGION)")
    p.add_argument("--memory", type=int, default=1024, metavar="MB", help="default memory per task, 128-10240")
    p.add_argument("--timeout", type=int, default=300, metavar="S", help="default task timeout, 1-900 s")
    p.add_argument("--architecture", choices=ARCHITECTURES, default="x86_64", help="the functions' processor")
    p.add_argument(
        "--python-version",
        choices=LAMBDA_PYTHONS,
        help="Lambda Python runtime; 3.10 and 3.11 run on Amazon Linux 2 (glibc 2.26), 3.12+ on Amazon Linux 2023 "
        f"(glibc 2.34) (default: this interpreter's, {driver_python()}, which the driver must match)",
    )
    p.add_argument(
        "--package",
        action="append",
        default=[],
        metavar="NAME",
        help=f"extra package for the layer, repeatable (default: none; always: {', '.join(BASE_PACKAGES)})",
    )
    p.add_argument("--prefix", default="lambdamr", help="key prefix the runtime may use (expires after a day)")
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


def register(subparsers: Any) -> None:
    """Add the deployment subcommands."""
    p = subparsers.add_parser(
        "deploy",
        help="create or update the bucket, role, layer and function (idempotent)",
        description="Create or update, idempotently, everything the aws backend needs in one region. Prints the plan "
        "(as --plan does), then each change as it is made, then a summary.",
    )
    _deployment_options(p)
    p.add_argument("--plan", action="store_true", help="only print what would be created or changed, and the cost at rest")
    p.add_argument("--json", action="store_true", help="with --plan: print the plan as JSON")
    p.set_defaults(func=_deploy)

    p = subparsers.add_parser(
        "plan",
        help="what deploy would create or change, with the policy documents; changes nothing",
        description="Print every resource `lambdamr deploy` with these options would create or change, with every "
        "policy document in full and the cost at rest. Only read calls are made (same as deploy --plan).",
    )
    _deployment_options(p)
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=_deploy, plan=True)

    p = subparsers.add_parser(
        "policies",
        help="the IAM, bucket and secret policy documents deploy attaches (for a security review)",
        description="Print the policy documents `lambdamr deploy` with these options attaches: the role's trust "
        "policy and inline policy, the bucket policy and the signing key secret's resource policy. Only read "
        "calls are made; values known only once a resource exists are shown as <...>.",
    )
    _deployment_options(p)
    p.add_argument("--json", action="store_true", help="print the documents as one JSON object")
    p.set_defaults(func=_policies)

    p = subparsers.add_parser("status", help="what is deployed, and whether it matches this driver")
    common_aws_options(p)
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=_status)


def _deployment_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "region": args.region,
        "bucket": args.bucket,
        "function_name": args.function_name,
        "memory_mb": args.memory,
        "timeout_s": args.timeout,
        "architecture": args.architecture,
        "python_version": args.python_version,
        "packages": args.package,
        "prefix": args.prefix,
        "reads": args.read,
        "writes": args.write,
        "revoke": args.revoke,
        **endpoints(args),
    }


def _deploy(args: argparse.Namespace) -> int:
    from lambdamr.deploy import deploy
    from lambdamr.deploy.planner import plan_deploy

    plan = plan_deploy(**_deployment_kwargs(args))
    if args.plan:
        print(json.dumps(plan.to_json(), indent=2) if args.json else plan)
        return 0
    print(plan)
    if plan.steps:
        print("deploying:")
    report = deploy(**_deployment_kwargs(args), on_change=lambda change: print(f"  - {change}", flush=True))
    print(report.summary())
    return 0


def _policies(args: argparse.Namespace) -> int:
    from lambdamr.deploy.plan import format_policies
    from lambdamr.deploy.planner import plan_deploy

    documents = plan_deploy(**_deployment_kwargs(args)).documents
    print(json.dumps(documents, indent=2) if args.json else format_policies(documents))
    return 0


def _status(args: argparse.Namespace) -> int:
    from lambdamr.deploy import status

    report = status(region=args.region, function_name=args.function_name, **endpoints(args))
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


