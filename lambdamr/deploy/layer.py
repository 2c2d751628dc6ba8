"""Building the dependency layer: pip for the target runtime's platform, then checks.

pip installs manylinux wheels for the chosen architecture and Python version into
``python/`` (where Lambda puts layer code on ``sys.path``), accepting only wheels whose
manylinux tag the runtime's OS can load (``runtimes.LambdaRuntime.platform_tags``)::

    pip install --only-binary=:all: --implementation cp --python-version 3.12
        --platform manylinux_2_34_x86_64 ... --platform manylinux_2_17_x86_64
        --platform manylinux2014_x86_64 --no-compile --target python/ cloudpickle tblib numpy blake3 [extras]

python3.10 and 3.11 (Amazon Linux 2, glibc 2.26) get at most ``manylinux_2_26`` wheels,
python3.12+ (Amazon Linux 2023, glibc 2.34) up to ``manylinux_2_34``. Without
--no-compile pip writes .pyc files for the host's Python that Lambda's ignores. ``tests``
folders are pruned (scipy and scikit-learn ship ~30 MB of them); bundled .so files are never
stripped (that breaks scipy's OpenBLAS). After the install, every ELF file's glibc version
needs are read (``elf.py``) and a file needing a newer glibc than the runtime's stops the
build, as do sizes over Lambda's limits — before anything is uploaded.
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
from dataclasses import dataclass, field
from pathlib import Path

from lambdamr._version import __version__
from lambdamr.deploy.elf import ElfFormatError, is_elf, required_glibc
from lambdamr.deploy.runtimes import RUNTIMES, LambdaRuntime, runtime_for
from lambdamr.errors import DeployError, LayerPlatformError, LayerTooLargeError

BASE_PACKAGES = ("cloudpickle", "tblib", "numpy", "blake3")  # blake3: lambdamr.data.digest
#: a layer (or function) zip uploaded inline in the API request
DIRECT_UPLOAD_LIMIT = 50 * 1024 * 1024
#: the function and all its layers, unzipped
UNZIPPED_LIMIT = 250 * 1024 * 1024
_PRUNED_DIRS = {"tests", "test", "__pycache__"}
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # zip entries get one date: same content, same bytes, same hash

PipRunner = Callable[[Sequence[str]], None]


def platforms(python_version: str, architecture: str) -> list[str]:
    """pip platform tags whose wheels load on the runtime of ``python_version``."""
    return runtime_for(python_version).platform_tags(architecture)


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
    for platform in platforms(python_version, architecture):
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
    spec = "\n".join([__version__, python_version, architecture, *sorted(packages), *platforms(python_version, architecture)])
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
    versions: dict[str, str] = field(default_factory=dict)  # distribution name -> version, as installed

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
    check_glibc(site, runtime_for(python_version))
    sizes = package_sizes(site)
    unzipped = sum(sizes.values())
    check_sizes(unzipped, sizes, function_unzipped)
    return LayerBuild(
        zip_bytes=zip_tree(Path(workdir)),
        unzipped_size=unzipped,
        sizes=sizes,
        spec_hash=layer_spec_hash(packages, python_version, architecture),
        packages=tuple(packages),
        versions=installed_versions(site),
    )


def installed_versions(site: Path) -> dict[str, str]:
    """The distributions pip installed under ``site``: name (normalised) -> version."""
    found: dict[str, str] = {}
    for metadata in site.glob("*.dist-info/METADATA"):
        fields = dict(
            line.split(": ", 1) for line in metadata.read_text(errors="replace").splitlines()[:40] if ": " in line
        )
        if "Name" in fields and "Version" in fields:
            found[_normalised(fields["Name"])] = fields["Version"].strip()
    return found


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def version_skew(layer_versions: dict[str, str], packages: Iterable[str]) -> list[str]:
    """A warning for each asked-for package whose layer version differs from the driver's:
    objects of that package pickled on one side may not load, or not behave, the same on the
    other (scikit-learn warns ``InconsistentVersionWarning``; numpy 1 cannot load numpy 2's)."""
    from importlib import metadata

    warnings = []
    for requirement in packages:
        name = _normalised(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0])
        remote = layer_versions.get(name)
        try:
            local = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # the driver does not have it: nothing is pickled across
        if remote is not None and remote != local:
            warnings.append(
                f"the layer has {name} {remote} but this driver has {local}: objects of {name} pickled on one "
                f"side may not load the same on the other; install {name}=={remote} here, or pin it in the "
                f"layer (--package '{name}=={local}') if wheels of it exist for the runtime"
            )
    return warnings


# ---- what the runtime's OS can load ----------------------------------------------------------
def distributions_by_file(site: Path) -> dict[str, str]:
    """Installed file (relative to ``site``) -> "name version" of the distribution that
    installed it, from each ``*.dist-info/RECORD``."""
    owners: dict[str, str] = {}
    for record in site.glob("*.dist-info/RECORD"):
        name, _, version = record.parent.name.removesuffix(".dist-info").partition("-")
        for line in record.read_text(errors="replace").splitlines():
            path = line.rsplit(",", 2)[0].strip('"')
            if path:
                owners[Path(path).as_posix()] = f"{name} {version}".strip()
    return owners


def too_new_for(site: Path, runtime: LambdaRuntime) -> list[tuple[str, tuple[int, ...]]]:
    """Every ELF file under ``site`` needing a newer glibc than ``runtime``'s, with the version."""
    found = []
    for path in sorted(p for p in site.rglob("*") if p.is_file() and not p.is_symlink()):
        if not is_elf(path):
            continue
        relative = path.relative_to(site).as_posix()
        try:
            needed = required_glibc(path.read_bytes())
        except ElfFormatError as exc:
            raise DeployError(
                f"python/{relative} in the layer is not a readable ELF object ({exc}); "
                "reinstall the package that ships it, or drop it from --package"
            ) from exc
        if needed is not None and needed > runtime.glibc:
            found.append((relative, needed))
    return found


def check_glibc(site: Path, runtime: LambdaRuntime) -> None:
    """Refuse a layer holding compiled code the runtime's glibc cannot load, saying what to do."""
    too_new = too_new_for(site, runtime)
    if not too_new:
        return
    owners = distributions_by_file(site)
    lines = []
    for relative, needed in too_new[:5]:
        owner = owners.get(relative)
        lines.append(f"python/{relative}" + (f" (from {owner})" if owner else "") + f" needs GLIBC_{_dotted(needed)}")
    more = f" and {len(too_new) - 5} more files" if len(too_new) > 5 else ""
    newest = max(needed for _, needed in too_new)
    pins = sorted({owners[r].replace(" ", "<", 1) for r, _ in too_new if r in owners and " " in owners[r]})
    pin = f" (e.g. --package '{pins[0]}')" if pins else ""
    newer = [r for r in RUNTIMES.values() if r.glibc >= newest]
    advice = f"pin an older release of that package, one with a manylinux wheel for glibc {runtime.glibc_text}{pin}"
    if newer:
        first = newer[0]
        advice += (
            f", or deploy for {first.name} or later ({first.os_name}, glibc {first.glibc_text}: "
            f"--python-version {first.python}, with the driver on that Python too)"
        )
    raise LayerPlatformError(
        f"the layer cannot load on {runtime.name}: " + "; ".join(lines) + more + f", but {runtime.name} runs on "
        f"{runtime.os_name} with glibc {runtime.glibc_text}. To fix it, {advice}"
    )


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))
