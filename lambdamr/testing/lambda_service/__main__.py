"""``python -m lambdamr.testing.lambda_service --null``: serve until stdin closes (benchmarks).

The caller's access keys come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY: the stand-in
checks every request's signature against them.
"""

from __future__ import annotations

import argparse
import os
import sys

from lambdamr.testing.lambda_service.service import LambdaService


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--null", action="store_true", help="accept invocations without running them")
    parser.add_argument("--control-url", help="the control plane (a moto server) to forward to")
    args = parser.parse_args(argv)
    key, secret = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    service = LambdaService(run=not args.null, control_url=args.control_url, admin=(key, secret)).start()
    print(service.url, flush=True)
    sys.stdin.read()
    service.stop()


if __name__ == "__main__":
    main()
