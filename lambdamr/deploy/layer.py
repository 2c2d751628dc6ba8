"""Building what runs on Lambda: the dependency layer (pip, for the Lambda platform) and the
function package (only the lambdamr runtime code).

pip installs manylinux wheels for the chosen architecture and Python version into
``python/`` (where Lambda puts layer code on ``sys.path``)::

    pip install --only-binary=:all: --implementation cp --python-version 3.12
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64
        --no-compile --target python/ cloudpickle tblib numpy [extras]

Without the 2_28 tag pip picks old wheels; without --no-compile it writes .pyc files for the
host's Python that Lambda's ignores. ``tests`` folders are pruned (scipy and scikit-learn
ship ~30 MB of them); bundled .so files are never stripped (that breaks scipy's OpenBLAS).
Sizes are checked against Lambda's limits before anything is uploaded.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .._version import __version__
from .errors import DeployError, LayerTooLargeError

BASE_PACKAGES = ("cloudpickle", "tblib", "numpy")
#: a layer (or function) zip uploaded inline in the API request
DIRECT_UPLOAD_LIMIT = 50 * 1024 * 1024
#: the function and all its layers, unzipped
UNZIPPED_LIMIT = 250 * 1024 * 1024
_PRUNED_DIRS = {"tests", "test", "__pycache__"}
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # zip entries get one date: same content, same bytes, same hash

PipRunner = Callable[[Sequence[str]], None]


def platforms(architecture: str) -> list[str]:
    """pip platform tags of Lambda's Amazon Linux 2023 for an architecture."""
    machine = {"x86_64": "x86_64", "arm64": "aarch64"}[architecture]
    return [f"manylinux_2_28_{machine}", f"manylinux2014_{machine}"]


def pip_command(packages: Iterable[str], target: str | os.PathLike[str], python_version: str, architecture: str) -> list[str]:
    """The exact pip command line that installs ``packages`` for Lambda into ``target``."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        python_version,
    ]
    for platform in platforms(architecture):
        command += ["--platform", platform]
    return command + ["--no-compile", "--target", str(target), *packages]


def layer_packages(extra: Iterable[str] = ()) -> list[str]:
    """The base packages plus the user's, without duplicates, in a stable order."""
    names: list[str] = []
    for package in (*BASE_PACKAGES, *extra):
        if package not in names:
            names.append(package)
    return names


def layer_spec_hash(packages: Sequence[str], python_version: str, architecture: str) -> str:
    """What identifies a layer build: a deploy with the same spec reuses the published layer."""
    spec = "\n".join([__version__, python_version, architecture, *sorted(packages), *platforms(architecture)])
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def run_pip(command: Sequence[str]) -> None:
    result = subprocess.run(list(command), capture_output=True, text=True)
    if result.returncode != 0:
        raise DeployError(
            "pip could not install the layer's packages for Lambda:\n"
            + (result.stderr or result.stdout).strip()[-2000:]
            + "\nEach package needs a manylinux wheel for this Python version and architecture."
        )


_TESTS_IMPORT = re.compile(r"^\s*(?:from|import)\s+([A-Za-z_][\w.]*\.(?:tests|test))\b", re.MULTILINE)


def imported_test_folders(root: Path) -> set[Path]:
    """Tests folders that a package's own code imports, so pruning them would break it
    (numpy 2.3's ``numpy.testing`` imports ``numpy._core.tests._natype``, and scipy imports
    ``numpy.testing``)."""
    kept: set[Path] = set()
    for source in root.rglob("*.py"):
        if _PRUNED_DIRS & set(source.relative_to(root).parts[:-1]):
            continue  # what tests import among themselves does not count
        for dotted in _TESTS_IMPORT.findall(source.read_text(errors="replace")):
            kept.add(root.joinpath(*dotted.split(".")))
    return kept


def prune(root: Path) -> int:
    """Remove tests folders (but those the packages import), caches and .pyc files; return
    the bytes saved."""
    saved = 0
    keep = imported_test_folders(root)
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and path.name in _PRUNED_DIRS and path.parent != root and path not in keep:
            saved += tree_size(path)
            shutil.rmtree(path)
        elif path.is_file() and path.suffix == ".pyc":
            saved += path.stat().st_size
            path.unlink()
    return saved


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def package_sizes(site: Path) -> dict[str, int]:
    """Unzipped bytes per top-level entry of the installed tree, largest first."""
    sizes: dict[str, int] = {}
    for entry in site.iterdir():
        size = tree_size(entry) if entry.is_dir() else entry.stat().st_size
        name = entry.name.split("-")[0] if entry.name.endswith(".dist-info") else entry.name
        name = name.removesuffix(".libs")
        sizes[name] = sizes.get(name, 0) + size
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1]))


def zip_tree(root: Path) -> bytes:
    """A deterministic zip of everything under ``root`` (paths relative to it)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(root).as_posix(), date_time=_FIXED_DATE)
            info.external_attr = (0o755 if os.access(path, os.X_OK) else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


@dataclass(frozen=True)
class LayerBuild:
    """A built layer: its zip, sizes, and the spec it was built from."""

    zip_bytes: bytes
    unzipped_size: int
    sizes: dict[str, int]
    spec_hash: str
    packages: tuple[str, ...]

    @property
    def zipped_size(self) -> int:
        return len(self.zip_bytes)

    @property
    def needs_s3_upload(self) -> bool:
        return self.zipped_size > DIRECT_UPLOAD_LIMIT


def check_sizes(unzipped: int, sizes: dict[str, int], function_unzipped: int = 0) -> None:
    """Raise ``LayerTooLargeError`` naming what to drop when over Lambda's 250 MB limit."""
    total = unzipped + function_unzipped
    if total <= UNZIPPED_LIMIT:
        return
    excess = total - UNZIPPED_LIMIT
    biggest = ", ".join(f"{name} ({size / 1e6:.0f} MB)" for name, size in list(sizes.items())[:5])
    raise LayerTooLargeError(
        f"the layer and function unzip to {total / 2**20:.0f} MB, over AWS Lambda's "
        f"{UNZIPPED_LIMIT // 2**20} MB limit by {excess / 2**20:.0f} MB; the largest packages are "
        f"{biggest}: drop one with fewer --package options, or ship it as a container image"
    )


def build_layer(
    python_version: str,
    architecture: str,
    extra_packages: Iterable[str] = (),
    *,
    workdir: Path,
    pip: PipRunner | None = None,
    function_unzipped: int = 0,
) -> LayerBuild:
    """Install the layer's packages for Lambda under ``workdir`` and zip them."""
    packages = layer_packages(extra_packages)
    site = Path(workdir) / "python"
    if site.exists():
        shutil.rmtree(site)
    site.mkdir(parents=True)
    (pip or run_pip)(pip_command(packages, site, python_version, architecture))
    prune(site)
    sizes = package_sizes(site)
    unzipped = sum(sizes.values())
    check_sizes(unzipped, sizes, function_unzipped)
    return LayerBuild(
        zip_bytes=zip_tree(Path(workdir)),
        unzipped_size=unzipped,
        sizes=sizes,
        spec_hash=layer_spec_hash(packages, python_version, architecture),
        packages=tuple(packages),
    )


# ---- the function package -----------------------------------------------------------------
#: where the closure starts; storage backends are loaded by name from a registry, so all go
RUNTIME_ROOTS = ("runtime/handler.py", "storage/__init__.py")
_PACKAGE_INIT = '"""lambdamr, as deployed on AWS Lambda: the runtime side only."""\n\nfrom ._version import __version__\n'


def runtime_modules(source: Path | None = None) -> list[str]:
    """The lambdamr modules the runtime handler can import (paths relative to the package):
    the closure of its imports, found by reading the code, plus every storage backend and
    every runtime module. The executor, backends, deploy and CLI are not among them."""
    import ast

    source = source or Path(__file__).resolve().parents[1]
    todo = [
        *RUNTIME_ROOTS,
        *(f"runtime/{p.name}" for p in (source / "runtime").glob("*.py")),
        *(f"storage/{p.name}" for p in (source / "storage").glob("*.py")),
    ]
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen or not (source / module).exists():
            continue
        seen.add(module)
        package = Path(module).parent
        for node in ast.walk(ast.parse((source / module).read_text(), module)):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.parent
                parts = [base.as_posix()] if base.as_posix() != "." else []
                names = [node.module] if node.module else [alias.name for alias in node.names]
                for name in names:
                    stem = "/".join([*parts, *name.split(".")])
                    todo += [f"{stem}.py", f"{stem}/__init__.py"]
                    if node.module:  # "from .x import y": y may be a submodule of x
                        todo += [f"{stem}/{alias.name}.py" for alias in node.names]
                for index in range(1, len(parts) + 1):  # importing a.b runs a/__init__ first
                    todo.append("/".join(parts[:index]) + "/__init__.py")
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for name in names:
                    if name.startswith("lambdamr."):
                        stem = "/".join(name.split(".")[1:])
                        todo += [f"{stem}.py", f"{stem}/__init__.py"]
    seen.discard("__init__.py")
    return sorted(seen)


def function_package() -> bytes:
    """The function's zip: ``lambdamr/`` with the runtime modules only (the driver's
    executor, backends and CLI stay home) and a minimal ``__init__``."""
    source = Path(__file__).resolve().parents[1]
    entries = {"lambdamr/__init__.py": _PACKAGE_INIT.encode()}
    for module in runtime_modules(source):
        entries[f"lambdamr/{module}"] = (source / module).read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_FIXED_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, entries[name])
    return buffer.getvalue()


def unzipped_size(zip_bytes: bytes) -> int:
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
        return sum(info.file_size for info in archive.infolist())


def code_sha256(zip_bytes: bytes) -> str:
    """The ``CodeSha256`` Lambda reports for a package: base64 of its SHA-256."""
    import base64

    return base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode()
