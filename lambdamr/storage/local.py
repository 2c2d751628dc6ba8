"""Storage in a local folder: the embedded default, private to the user (modes 0700/0600).

Several drivers may share one folder: each removes the folders it empties (S3 has none to
leave behind), so a folder can vanish between another writer's ``mkdir`` and its write; a
write then makes the folder again and retries. File-system failures become ``StorageError``s
that say what happened (read-only, disk full, permission denied) instead of a bare ``OSError``.
"""

from __future__ import annotations

import errno
import io
import mmap
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, cast

from lambdamr.errors import (
    ConfigurationError,
    ObjectNotFound,
    StorageError,
    StorageFullError,
    StoragePermissionError,
    StorageReadOnlyError,
)
from lambdamr.storage.base import ObjectInfo, Storage

#: times a write makes its folder again after another driver's cleanup removed it meanwhile
WRITE_ATTEMPTS = 5
FOLDER_MODE = 0o700

_ERRNO_ERRORS: dict[int, tuple[type[StorageError], str]] = {
    errno.EROFS: (StorageReadOnlyError, "the file system is read-only: remount it read-write, or choose another folder"),
    errno.ENOSPC: (StorageFullError, "no space left on the device: free some space, or choose another folder"),
    errno.EDQUOT: (StorageFullError, "the disk quota is exceeded: free some space, or choose another folder"),
    errno.EACCES: (StoragePermissionError, "permission denied: make the folder writable by this user, or choose another"),
    errno.EPERM: (StoragePermissionError, "operation not permitted: make the folder writable by this user, or choose another"),
}


def storage_error(exc: OSError, doing: str) -> StorageError:
    """The ``StorageError`` (subclass) that says what a file-system failure means."""
    cls, hint = _ERRNO_ERRORS.get(exc.errno or 0, (StorageError, "see the error above"))
    error = cls(f"could not {doing}: {hint} (storage=... or LAMBDAMR_STORAGE) [{exc.strerror or exc}]")
    error.__cause__ = exc
    return error


def make_private_folders(folder: Path, stop: Path | None = None) -> None:
    """Create ``folder`` and every missing parent (below ``stop``) with mode 0700.

    ``Path.mkdir(parents=True, mode=...)`` gives the mode to the last folder only; its
    parents get the umask's default (often 0755), readable by every user of the machine.
    """
    missing = []
    while folder != stop and not folder.is_dir():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=FOLDER_MODE)
        except FileExistsError:
            pass


class LocalStorage(Storage):
    """Objects as files under ``root``; keys map to relative paths.

    Writes go to a temporary file in the same folder and are renamed (or hard-linked, for
    ``if_absent``) into place, so a reader never sees half an object.
    """

    kind = "local"
    concurrent_requests = 1  # the page cache has no latency to hide

    def __init__(self, root: str | os.PathLike[str]) -> None:
        super().__init__()
        self.root = Path(root).expanduser().resolve()
        try:
            make_private_folders(self.root)
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
        fd, tmp = self._new_temp_file(path.parent, key)
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
        except OSError as exc:
            _discard(tmp)
            raise storage_error(exc, f"write {self.url(key)}") from exc
        except BaseException:
            _discard(tmp)
            raise
        self.stats.add(puts=1, bytes_written=size)
        return True

    def _new_temp_file(self, folder: Path, key: str) -> tuple[int, str]:
        """A new temp file (0600) in ``folder``, made again if another driver's cleanup
        removes the folder between its creation and the file's (the folder is only removed
        while empty, so once the file is in it, it stays)."""
        for attempt in range(WRITE_ATTEMPTS):
            try:
                make_private_folders(folder, stop=self.root)
                return tempfile.mkstemp(dir=folder, prefix=".tmp-")
            except FileNotFoundError as exc:
                if attempt == WRITE_ATTEMPTS - 1:
                    raise storage_error(exc, f"write {self.url(key)} (its folder kept vanishing)") from exc
            except OSError as exc:
                raise storage_error(exc, f"write {self.url(key)}") from exc
        raise AssertionError("unreachable")

    def _open(self, key: str) -> io.BufferedReader:
        """The object's file, opened for reading: a missing key, or a folder, is ObjectNotFound."""
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise ObjectNotFound(f"no object at {self.url(key)}") from None
        except IsADirectoryError:
            raise ObjectNotFound(f"{self.url(key)} is a folder, not an object") from None
        except OSError as exc:
            raise storage_error(exc, f"read {self.url(key)}") from exc

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        with self._open(key) as fh:
            try:
                if start:
                    fh.seek(start)
                size = -1 if end is None else max(0, end - (start or 0))
                data = fh.read(size)
            except OSError as exc:
                raise storage_error(exc, f"read {self.url(key)}") from exc
        self.stats.add(gets=1, bytes_read=len(data))
        return data

    def open_range(self, key: str, start: int, end: int) -> IO[bytes]:
        fh = self._open(key)
        try:
            size = os.fstat(fh.fileno()).st_size
            fh.seek(start)
        except BaseException:
            fh.close()
            raise
        length = max(0, min(end, size) - start)
        self.stats.add(gets=1, bytes_read=length)
        # A raw stream, not a BufferedReader around one: readinto() fills the caller's buffer in one copy.
        return cast(IO[bytes], _RangeReader(fh, length))

    def load_buffer(self, key: str, size: int) -> memoryview:
        """The file mapped copy-on-write (``MAP_PRIVATE``): no copy on the way in, and the
        memory is the reader's own once written to (the file never changes).

        Only a file this user owns and nobody else may write is mapped: a reader checks the
        bytes once, and a mapping would show later writes to the file by someone else. Such a
        file (another user's, or group-writable) is read into private memory instead. (This
        user's own processes hold the signing key anyway.)
        """
        fh = self._open(key)
        fd = fh.fileno()
        try:
            info = os.fstat(fd)
            length = min(size, info.st_size)
            private = info.st_uid == os.geteuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
            if length and private and stat.S_ISREG(info.st_mode):
                view = memoryview(mmap.mmap(fd, length, access=mmap.ACCESS_COPY))
            else:
                view = memoryview(bytearray(length))
                count = 0
                while count < length:  # one read returns at most 2 GiB
                    got = os.readv(fd, [view[count:]])
                    if not got:
                        break
                    count += got
                view = view[:count]
        except OSError as exc:
            raise storage_error(exc, f"read {self.url(key)}") from exc
        finally:
            fh.close()
        self.stats.add(gets=1, bytes_read=view.nbytes)
        return view

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
                    info = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:  # deleted while listing
                    continue
                found.append(ObjectInfo(key, info.st_size, info.st_mtime))
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
            except OSError as exc:
                raise storage_error(exc, f"delete {self.url(key)}") from exc
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
                raise storage_error(exc, f"remove the empty folder {folder}") from exc
            folder = folder.parent

    def delete_prefix(self, prefix: str) -> int:
        if prefix.endswith("/"):
            folder = self._path(prefix.rstrip("/"))
            if folder.is_dir():
                count = sum(len(files) for _, _, files in os.walk(folder))
                failures: list[OSError] = []

                def note(function: Any, path: str, exc: BaseException) -> None:
                    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
                        failures.append(exc)

                if sys.version_info >= (3, 12):
                    shutil.rmtree(folder, onexc=note)
                else:  # onerror is deprecated from 3.12 on
                    shutil.rmtree(folder, onerror=lambda function, path, info: note(function, path, info[1]))
                if failures:
                    raise storage_error(failures[0], f"delete the objects under {self.url(prefix)}")
                self.stats.add(deletes=count)
                self._prune(folder.parent)
                return count
            return 0
        return super().delete_prefix(prefix)

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "root": str(self.root)}

    def url(self, key: str = "") -> str:
        return str(self.root / key) if key else str(self.root)


def _discard(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:  # gone already, or the store refuses even that: nothing more to do
        pass


class _RangeReader(io.RawIOBase):
    """A file read from its current position for at most ``length`` bytes."""

    def __init__(self, fh: io.BufferedReader, length: int) -> None:
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
