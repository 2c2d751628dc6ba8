"""Shared by the ``test_cli_*`` modules: moto in-process, a stand-in for pip, a terminal."""

from __future__ import annotations

import io

from tests.deploy.moto_iam import fake_pip

REGION = "us-east-1"
BUCKET = "lambdamr-123456789012-us-east-1"  # moto's account id
AWS = ["--region", REGION]

__all__ = ["AWS", "BUCKET", "REGION", "Terminal", "fake_pip"]


class Terminal(io.StringIO):
    """A stdin that is a terminal, where the user types ``answer``."""

    def __init__(self, answer: str) -> None:
        super().__init__(answer + "\n")

    def isatty(self) -> bool:
        return True
