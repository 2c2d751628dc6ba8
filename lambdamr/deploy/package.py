"""The function package: the lambdamr modules that run on Lambda, and nothing else.

What goes in is ``lambdamr.runtime.remote_modules.REMOTE_MODULES``, one source file per
module (a package's ``__init__.py``), under ``lambdamr/``. The zip is deterministic (sorted
entries, one date), so the same code gives the same ``CodeSha256`` and a redeploy of
unchanged code changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from pathlib import Path

from lambdamr.errors import DeployError
from lambdamr.runtime.remote_modules import REMOTE_MODULES

_FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # zip entries get one date: same content, same bytes, same hash


def module_file(module: str, source: Path) -> Path:
    """The source file of a dotted ``lambdamr`` module under ``source`` (the package folder)."""
    parts = module.split(".")
    if parts[0] != "lambdamr":
        raise DeployError(f"{module!r} in REMOTE_MODULES is not a lambdamr module")
    base = source.joinpath(*parts[1:])
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    raise DeployError(f"{module!r} is listed in REMOTE_MODULES but has no source file under {source}")


def package_entries(source: Path | None = None, modules: tuple[str, ...] = REMOTE_MODULES) -> dict[str, bytes]:
    """Zip path -> contents of every remote module (and of the ``__init__.py`` of every
    package above one, which Python runs first)."""
    source = source or Path(__file__).resolve().parents[1]
    wanted = set(modules)
    for module in modules:
        parts = module.split(".")
        wanted.update(".".join(parts[:i]) for i in range(1, len(parts)))
    entries = {}
    for module in sorted(wanted):
        path = module_file(module, source)
        entries[Path("lambdamr", path.relative_to(source)).as_posix()] = path.read_bytes()
    return entries


def function_package(source: Path | None = None) -> bytes:
    """The function's zip: ``lambdamr/`` holding the remote modules only."""
    entries = package_entries(source)
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
    return base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode()
