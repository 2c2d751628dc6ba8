"""``lambdamr dashboard``: serve the live dashboard of the configured storage's jobs."""

from __future__ import annotations

import argparse
import sys
import webbrowser
from typing import Any

from lambdamr.cli.observe import configured_signer, open_configured_storage, storage_options
from lambdamr.dashboard.server import DEFAULT_HOST, DEFAULT_PORT


def register(subparsers: Any) -> None:
    """Add the ``dashboard`` subcommand."""
    p = subparsers.add_parser(
        "dashboard",
        help="watch the jobs in storage live in a browser (local, read-only)",
        description="Serve a read-only web page showing every job of the configured storage — running ones live "
        "(progress, task stream, stragglers, failures, cost) and past ones from the job history. It reads storage "
        "only, so it shows the jobs of any driver using it, here or on another machine.",
    )
    storage_options(p)
    p.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default: %(default)s, this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default: %(default)s; 0 picks a free one)")
    p.add_argument("--open", action="store_true", help="open the page in a web browser")
    p.set_defaults(func=_dashboard)


def _dashboard(args: argparse.Namespace) -> int:
    from lambdamr.dashboard import open_dashboard

    storage, prefix = open_configured_storage(args)
    board = open_dashboard(storage, prefix, configured_signer(args, storage), host=args.host, port=args.port)
    print(f"lambdamr dashboard of {storage.url(prefix)} at {board.url} (Ctrl-C stops it)", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"warning: listening on {args.host}: anyone who can reach this address sees your jobs' output "
            "(the page has no login)",
            file=sys.stderr,
        )
    if args.open:
        webbrowser.open(board.url)
    try:
        board.serve_forever()
    finally:
        board.close()
    return 0
