"""What deploy uploaded: function packages and layer versions, caught on their way to moto.

moto keeps a function's zip but cannot hand it back (``GetFunction``'s ``Code.Location`` is
an address on AWS), so the stand-in reads the uploads that pass through it:
``CreateFunction`` and ``UpdateFunctionCode`` (``ZipFile`` inline, or ``S3Bucket``/``S3Key``)
and ``PublishLayerVersion`` (whose answer names the new ``LayerVersionArn``). Packages are
kept by their ``CodeSha256`` — what every version's configuration names — and unpacked once
each into the cache folder: the function package as a task root, layers together as ``opt``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lambdamr.errors import ConfigurationError

S3Reader = Callable[[str, str], bytes]  # (bucket, key) -> bytes


def code_sha256(zip_bytes: bytes) -> str:
    return base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode()


class CodeStore:
    """Function packages by ``CodeSha256`` and layer zips by version ARN, unpacked on demand."""

    def __init__(self, folder: Path, read_s3: S3Reader | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.read_s3 = read_s3
        self._packages: dict[str, bytes] = {}
        self._layers: dict[str, bytes] = {}
        self._lock = threading.Lock()

    # ---- what passes through --------------------------------------------------------------
    def observe(self, method: str, path: str, body: bytes, status: int, answer: bytes) -> None:
        """Keep the code of a successful CreateFunction, UpdateFunctionCode or PublishLayerVersion."""
        if status >= 300 or method not in ("POST", "PUT") or not body:
            return
        parts = path.split("?")[0].strip("/").split("/")
        is_create = method == "POST" and parts[:2] == ["2015-03-31", "functions"] and len(parts) == 2
        is_update = method == "PUT" and parts[:2] == ["2015-03-31", "functions"] and parts[3:] == ["code"]
        is_layer = method == "POST" and parts[:2] == ["2018-10-31", "layers"] and parts[3:] == ["versions"]
        if not (is_create or is_update or is_layer):
            return
        request = json.loads(body)
        zip_bytes = self._zip_of(request.get("Content") if is_layer else request.get("Code", request))
        if zip_bytes is None:
            return
        with self._lock:
            if is_layer:
                self._layers[str(json.loads(answer)["LayerVersionArn"])] = zip_bytes
            else:
                self._packages[code_sha256(zip_bytes)] = zip_bytes

    def _zip_of(self, code: dict[str, Any] | None) -> bytes | None:
        if not code:
            return None
        if code.get("ZipFile"):
            return base64.b64decode(code["ZipFile"])
        if code.get("S3Bucket") and code.get("S3Key") and self.read_s3 is not None:
            return self.read_s3(code["S3Bucket"], code["S3Key"])
        return None

    # ---- what environments start from ---------------------------------------------------------
    def task_root(self, sha256: str) -> Path:
        """The function package with this ``CodeSha256``, unpacked (Lambda's ``/var/task``)."""
        with self._lock:
            package = self._packages.get(sha256)
        if package is None:
            raise ConfigurationError(
                f"the Lambda stand-in never saw the code {sha256}: deploy through it "
                "(deploy(lambda_endpoint_url=standin.url)) so that it can run what was uploaded"
            )
        return self._unpacked([package], "package", "var/task")

    def opt_root(self, layer_arns: Sequence[str]) -> Path:
        """The function's layers unpacked in order into one folder (Lambda's ``/opt``)."""
        zips = []
        with self._lock:
            for arn in layer_arns:
                if arn not in self._layers:
                    raise ConfigurationError(f"the Lambda stand-in never saw layer {arn} being published: deploy through it")
                zips.append(self._layers[arn])
        return self._unpacked(zips, "layers", "opt")

    def _unpacked(self, zips: list[bytes], kind: str, where: str) -> Path:
        """``<folder>/<kind>-<digest>/<where>``: where Lambda would unpack them (/var/task, /opt)."""
        digest = hashlib.sha256(b"".join(hashlib.sha256(z).digest() for z in zips)).hexdigest()[:20]
        root = self.folder / f"{kind}-{digest}"
        with self._lock:
            if not root.exists():
                partial = root.with_name(root.name + ".partial")
                for zip_bytes in zips:
                    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
                        archive.extractall(partial / where)
                (partial / where).mkdir(parents=True, exist_ok=True)
                partial.rename(root)
        return root / where
