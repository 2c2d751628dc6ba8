"""Every lambdamr module that runs on the remote side, by construction.

The function package ``lambdamr deploy`` uploads holds exactly these modules (their source
files, nothing else of lambdamr), so this list is what AWS Lambda can import:

- every module of the remote packages, found in their folders: ``lambdamr.runtime`` (the
  handler and what it needs), ``lambdamr.storage``, ``lambdamr.shuffle`` (the remote tasks of
  ``map_reduce`` and ``map_then_reduce``) and ``lambdamr.data`` (``share()`` handles and
  ``objects()`` chunks, which the driver pickles by reference into tasks). A new file in one
  of these folders ships without being listed anywhere;
- a short list of top-level modules the driver and the remote side share.

Nothing else of lambdamr goes: the driver (executor, futures, ``lambdamr.driver``), the
backends, deploy, the CLI and ``lambdamr.testing`` stay behind, so a cold start never pays
for them. ``tests/test_architecture.py`` checks that every remote module's imports stay
inside this set; ``tests/aws/test_function_package.py`` unpacks the package into an empty
folder and imports every module listed here with only the layer's packages beside it.
"""

from __future__ import annotations

import pkgutil
from pathlib import Path

#: the packages that run remotely whole: every module under their folders ships
REMOTE_PACKAGES: tuple[str, ...] = ("lambdamr.runtime", "lambdamr.storage", "lambdamr.shuffle", "lambdamr.data")

#: top-level modules that run on both sides
SHARED_MODULES: tuple[str, ...] = (
    "lambdamr",  # lazy: importing it loads only _version
    "lambdamr._version",
    "lambdamr.errors",
    "lambdamr.counters",
    "lambdamr.config",  # shuffle.plan validates memory and timeout with it
    "lambdamr.aws_region",  # config imports it
    "lambdamr.aws_errors",  # storage.s3 translates botocore errors with it
    "lambdamr.protocol",
    "lambdamr.serialize",
    "lambdamr.signing",
)

_ROOT = Path(__file__).resolve().parents[1]  # the lambdamr folder (on Lambda: /var/task/lambdamr)


def modules_under(package: str, root: Path = _ROOT) -> list[str]:
    """``package`` and every module and subpackage in its folder, found without importing them."""
    folder = root.joinpath(*package.split(".")[1:])
    found = [package]
    for info in pkgutil.iter_modules([str(folder)], prefix=f"{package}."):
        if info.ispkg:
            found += modules_under(info.name, root)
        else:
            found.append(info.name)
    return found


def remote_modules(root: Path = _ROOT) -> tuple[str, ...]:
    """The remote set of the lambdamr source tree at ``root``, sorted."""
    packaged = {module for package in REMOTE_PACKAGES for module in modules_under(package, root)}
    return tuple(sorted(packaged | set(SHARED_MODULES)))


REMOTE_MODULES: tuple[str, ...] = remote_modules()
