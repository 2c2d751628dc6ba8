"""Storage in a local folder: the embedded default, private to the user (modes 0700/0600)."""

from __future__ import annotations

import errno
import io
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from ..errors import ConfigurationError, ObjectNotFound, StorageError
from .base import ObjectInfo, Storage


class LocalStorage(Storage):
    """Objects as files under ``root``; keys map to relative paths.

    Writes go to a temporary file in the same folder and are renamed (or hard-linked, for
    ``if_absent``) into place, so a reader never sees half an object.
    """

    kind = "local"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        super().__init__()
        self.root = Path(root).expanduser().resolve()
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the local storage folder {self.root}: {exc.strerror}; "
                "choose another with storage=... or LAMBDAMR_STORAGE"
            ) from exc

    def _path(self, key: str) -> Path:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise StorageError(f"invalid storage key {key!r}: keys are relative, without '..'")
        return self.root / key

    def put(self, key: str, data: bytes | memoryview, *, if_absent: bool = False) -> bool:
        return self.put_parts(key, (data,), if_absent=if_absent)

    def put_parts(self, key: str, parts: Sequence[bytes | memoryview], *, if_absent: bool = False) -> bool:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")  # created 0600
        size = 0
        try:
            with os.fdopen(fd, "wb") as fh:
                for part in parts:
                    size += fh.write(part)
            if if_absent:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    return False
                finally:
                    os.unlink(tmp)
            else:
                os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self.stats.add(puts=1, bytes_written=size)
        return True

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        path = self._path(key)
        try:
            with open(path, "rb") as fh:
                if start:
                    fh.seek(start)
                size = -1 if end is None else max(0, end - (start or 0))
                data = fh.read(size)
        except FileNotFoundError:
            raise ObjectNotFound(f"no object at {self.url(key)}") from None
        except IsADirectoryError:
            raise ObjectNotFound(f"{self.url(key)} is a folder, not an object") from None
        self.stats.add(gets=1, bytes_read=len(data))
        return data

    def open_range(self, key: str, start: int, end: int) -> IO[bytes]:
        path = self._path(key)
        try:
            fh = open(path, "rb")
        except FileNotFoundError:
            raise ObjectNotFound(f"no object at {self.url(key)}") from None
        except IsADirectoryError:
            raise ObjectNotFound(f"{self.url(key)} is a folder, not an object") from None
        try:
            size = os.fstat(fh.fileno()).st_size
            fh.seek(start)
        except BaseException:
            fh.close()
            raise
        length = max(0, min(end, size) - start)
        self.stats.add(gets=1, bytes_read=length)
        return _RangeReader(fh, length)

    def list(self, prefix: str, start_after: str = "") -> Iterator[ObjectInfo]:
        self.stats.add(lists=1)
        # Walk only the deepest folder the prefix fully names.
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self.root / folder if folder else self.root
        if not base.is_dir():
            return
        found = []
        for dirpath, dirnames, filenames in os.walk(base):
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
            dirnames[:] = [d for d in dirnames if (rel_dir + d + "/").startswith(prefix) or prefix.startswith(rel_dir + d + "/")]
            for name in filenames:
                key = rel_dir + name
                if name.startswith(".tmp-") or not key.startswith(prefix) or key <= start_after:
                    continue
                try:
                    size = os.stat(os.path.join(dirpath, name)).st_size
                except FileNotFoundError:  # deleted while listing
                    continue
                found.append(ObjectInfo(key, size))
        found.sort(key=lambda info: info.key)
        yield from found

    def delete(self, keys: Iterable[str]) -> int:
        count = 0
        parents = set()
        for key in keys:
            path = self._path(key)
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            count += 1
            parents.add(path.parent)
        self.stats.add(deletes=count)
        for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
            self._prune(parent)
        return count

    def _prune(self, folder: Path) -> None:
        """Remove empty folders up to the root, as S3 has no folders to leave behind."""
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                    return
                raise
            folder = folder.parent

    def delete_prefix(self, prefix: str) -> int:
        if prefix.endswith("/"):
            folder = self._path(prefix.rstrip("/"))
            if folder.is_dir():
                count = sum(len(files) for _, _, files in os.walk(folder))
                shutil.rmtree(folder, ignore_errors=True)
                self.stats.add(deletes=count)
                self._prune(folder.parent)
                return count
            return 0
        return super().delete_prefix(prefix)

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "root": str(self.root)}

    def url(self, key: str = "") -> str:
        return str(self.root / key) if key else str(self.root)


class _RangeReader(io.RawIOBase):
    """A file read from its current position for at most ``length`` bytes."""

    def __init__(self, fh: IO[bytes], length: int) -> None:
        super().__init__()
        self._fh = fh
        self._left = length

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        size = self._left if size is None or size < 0 else min(size, self._left)
        data = self._fh.read(size)  # the file's own read: one copy, into a bytes of that size
        self._left -= len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")[: self._left]
        count = self._fh.readinto(view) or 0
        self._left -= count
        return count

    def close(self) -> None:
        self._fh.close()
        super().close()
