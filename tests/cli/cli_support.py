"""Shared by the ``test_cli_*`` modules: moto in-process, a stand-in for pip, a terminal."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

REGION = "us-east-1"
BUCKET = "lambdamr-123456789012-us-east-1"  # moto's account id
AWS = ["--region", REGION]


def fake_pip(command: Sequence[str]) -> None:
    """Stands in for pip: each requested package becomes a one-line module."""
    target = Path(command[command.index("--target") + 1])
    for package in command[command.index("--target") + 2 :]:
        folder = target / package.replace("-", "_")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "__init__.py").write_text(f"NAME = {package!r}\n")


class Terminal(io.StringIO):
    """A stdin that is a terminal, where the user types ``answer``."""

    def __init__(self, answer: str) -> None:
        super().__init__(answer + "\n")

    def isatty(self) -> bool:
        return True
