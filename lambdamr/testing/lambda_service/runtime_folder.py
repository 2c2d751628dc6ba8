"""The folder that plays ``/var/runtime``: AWS's runtime interface client and what Lambda's
managed Python runtimes provide next to it (boto3 and botocore), nothing else.

Each distribution's top-level modules are linked (not copied) from the driver's environment,
so only those names become importable in an execution environment. ``bootstrap.py`` does what
the managed runtime's bootstrap does: put ``/var/task``, the layer's ``/opt/python`` folders
and ``/var/runtime`` on ``sys.path`` (in Lambda's order), enter the task root, and hand over
to ``awslambdaric`` with the handler string of ``_HANDLER``.
"""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

from lambdamr.errors import ConfigurationError

#: awslambdaric and its own dependencies, plus the AWS SDK the python3.x runtimes include
RUNTIME_DISTRIBUTIONS = (
    "awslambdaric",
    "simplejson",
    "snapshot-restore-py",
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "python-dateutil",
    "six",
    "urllib3",
)

BOOTSTRAP = '''\
"""/var/runtime/bootstrap of the lambdamr stand-in: Lambda's sys.path, then awslambdaric."""
import os
import sys

runtime = os.path.dirname(os.path.abspath(__file__))
task_root = os.environ["LAMBDA_TASK_ROOT"]
opt = sys.argv[1]
version = "python%d.%d" % sys.version_info[:2]
sys.path[:0] = [task_root, f"{opt}/python/lib/{version}/site-packages", f"{opt}/python", runtime]
os.chdir(task_root)
del sys.argv[1]
from awslambdaric.__main__ import main

main([sys.argv[0], os.environ["_HANDLER"]])
'''


def top_level_entries(distribution: str) -> list[Path]:
    """The installed top-level packages and modules of one distribution."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ConfigurationError(
            f"the Lambda stand-in needs {distribution!r} in the driver's environment: pip install lambdamr[test]"
        ) from exc
    names = {
        Path(str(file)).parts[0]
        for file in dist.files or []
        if not str(file).startswith("..") and not Path(str(file)).parts[0].endswith((".dist-info", "__pycache__"))
    }
    return [Path(str(dist.locate_file(name))) for name in sorted(names)]


def build_runtime_folder(target: Path) -> Path:
    """Fill ``target`` (once) with the runtime's packages and bootstrap; return it."""
    target.mkdir(parents=True, exist_ok=True)
    for distribution in RUNTIME_DISTRIBUTIONS:
        for entry in top_level_entries(distribution):
            link = target / entry.name
            if not link.exists():
                os.symlink(entry, link)
    (target / "bootstrap.py").write_text(BOOTSTRAP)
    return target
