"""AWS Lambda's Python runtimes and the operating system each one runs on.

A layer's compiled code must load on the runtime's OS, so its wheels are chosen by that OS's
glibc: python3.10 and python3.11 run on Amazon Linux 2 (glibc 2.26), python3.12 and later on
Amazon Linux 2023 (glibc 2.34) — https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html.

By PEP 600 a ``manylinux_2_X`` wheel loads on any glibc 2.X or newer, so a runtime accepts
every ``manylinux_2_X`` tag from its own glibc down to ``manylinux_2_17`` (alias
``manylinux2014``, the oldest tag that has an aarch64 form). pip does not expand the newer
tags downwards by itself: each one is passed with ``--platform``, newest first (pip prefers
earlier tags).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from lambdamr.errors import ConfigurationError

#: Lambda architecture name -> the machine name in manylinux tags
MACHINES = {"x86_64": "x86_64", "arm64": "aarch64"}
_OLDEST_MANYLINUX_MINOR = 17  # manylinux2014


@dataclass(frozen=True)
class LambdaRuntime:
    """One managed Python runtime: its name and the OS (and glibc) under it."""

    python: str  # "3.12"
    os_name: str
    glibc: tuple[int, int]

    @property
    def name(self) -> str:
        return f"python{self.python}"

    @property
    def glibc_text(self) -> str:
        return "{}.{}".format(*self.glibc)

    def platform_tags(self, architecture: str) -> list[str]:
        """pip ``--platform`` tags whose wheels load on this runtime, newest first."""
        machine = MACHINES[architecture]
        major, minor = self.glibc
        tags = [f"manylinux_{major}_{m}_{machine}" for m in range(minor, _OLDEST_MANYLINUX_MINOR - 1, -1)]
        return [*tags, f"manylinux2014_{machine}"]


_AMAZON_LINUX_2 = ("Amazon Linux 2", (2, 26))
_AMAZON_LINUX_2023 = ("Amazon Linux 2023", (2, 34))
RUNTIMES: dict[str, LambdaRuntime] = {
    python: LambdaRuntime(python, *os_)
    for python, os_ in (
        ("3.10", _AMAZON_LINUX_2),
        ("3.11", _AMAZON_LINUX_2),
        ("3.12", _AMAZON_LINUX_2023),
        ("3.13", _AMAZON_LINUX_2023),
        ("3.14", _AMAZON_LINUX_2023),
    )
}
#: Python versions AWS Lambda offers as managed runtimes (and lambdamr supports: 3.10+)
LAMBDA_PYTHONS = tuple(RUNTIMES)


def driver_python() -> str:
    """This interpreter's ``major.minor``."""
    return "{}.{}".format(*sys.version_info[:2])


def runtime_for(python_version: str | None) -> LambdaRuntime:
    """The runtime for ``python_version``; ``None`` means the driver's own Python.

    Raises:
        ConfigurationError: Lambda offers no such runtime (naming the ones it does).
    """
    offered = ", ".join(LAMBDA_PYTHONS)
    if python_version is None:
        here = driver_python()
        if here not in RUNTIMES:
            raise ConfigurationError(
                f"this driver runs Python {here}, which AWS Lambda does not offer as a runtime "
                f"({offered}); pickled functions only load on the same Python minor version, so run "
                "the driver on one of those"
            )
        return RUNTIMES[here]
    if python_version not in RUNTIMES:
        raise ConfigurationError(
            f"python_version={python_version!r}: AWS Lambda runs Python {offered}; "
            "pick the driver's own version, since pickled functions only load on the same one"
        )
    return RUNTIMES[python_version]
