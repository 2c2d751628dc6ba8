"""Big objects on S3 in parts: multipart uploads and parallel ranged GETs (s3transfer).

One PUT or GET of 100 MB runs on one connection at the speed of one TCP stream; S3 serves
many in parallel (AWS recommends 8-16 MB parts). boto3's transfer manager (s3transfer) does
both directions with a thread pool: an upload over ``MULTIPART_THRESHOLD`` goes up as a
multipart upload of ``PART_BYTES`` parts, a download is split into ranged GETs of
``PART_BYTES`` that run ``CONCURRENCY`` at a time. Here it reads from and writes into memory
the caller owns: an upload reads each part straight from the value's buffer, a download
writes each range into its place in one ``bytearray`` (no file, no join).
"""

from __future__ import annotations

import io
import threading
from typing import Any

#: objects larger than this go up as a multipart upload
MULTIPART_THRESHOLD = 16 * 1024 * 1024
#: the part (and range) size: AWS's guidance for throughput is 8-16 MB
PART_BYTES = 8 * 1024 * 1024
#: parts in flight at once, per transfer
CONCURRENCY = 8


class _MemoryFile(io.RawIOBase):
    """A seekable file over a block of memory: the position arithmetic both directions share."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        super().__init__()
        self._view = memoryview(data).cast("B")
        self._position = 0

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}[whence]
        self._position = max(0, base + offset)
        return self._position


class MemoryReader(_MemoryFile):
    """A seekable, readable file over a buffer (read copies one part at a time)."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        piece = self._view[self._position : self._position + len(target)]
        target[: len(piece)] = piece
        self._position += len(piece)
        return len(piece)


class MemoryWriter(_MemoryFile):
    """A seekable file that writes into a preallocated ``bytearray`` (s3transfer writes
    each downloaded range at its offset)."""

    def __init__(self, memory: bytearray) -> None:
        super().__init__(memory)
        self.written = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        piece = memoryview(data).cast("B")
        end = self._position + len(piece)
        if end > len(self._view):
            raise ValueError(f"the object is larger than the {len(self._view)} bytes its writer reported")
        self._view[self._position : end] = piece
        self._position = end
        self.written += len(piece)
        return len(piece)


class _KnownSize:
    """An s3transfer subscriber that tells the download its size (no HeadObject first)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def on_queued(self, future: Any, **kwargs: Any) -> None:
        future.meta.provide_transfer_size(self.size)

    def on_progress(self, **kwargs: Any) -> None:
        pass

    def on_done(self, **kwargs: Any) -> None:
        pass


class Transfers:
    """One transfer manager per store (its threads and connections), made on first use."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._manager: Any = None
        self._lock = threading.Lock()

    def _transfer_manager(self) -> Any:
        with self._lock:
            if self._manager is None:
                from boto3.s3.transfer import TransferConfig, create_transfer_manager

                config = TransferConfig(
                    multipart_threshold=MULTIPART_THRESHOLD,
                    multipart_chunksize=PART_BYTES,
                    max_concurrency=CONCURRENCY,
                    use_threads=True,
                )
                self._manager = create_transfer_manager(self._client, config)
            return self._manager

    def upload(self, bucket: str, key: str, data: bytes | bytearray | memoryview) -> int:
        """Store ``data`` at ``key`` (a multipart upload when large); return the parts sent."""
        size = memoryview(data).nbytes
        self._transfer_manager().upload(MemoryReader(data), bucket, key).result()
        return max(1, -(-size // PART_BYTES)) if size > MULTIPART_THRESHOLD else 1

    def download(self, bucket: str, key: str, size: int) -> tuple[memoryview, int]:
        """The ``size`` bytes of ``key`` read by parallel ranged GETs into one block of
        memory; return it (shorter if the object is) and the GETs it took."""
        memory = bytearray(size)
        writer = MemoryWriter(memory)
        if size:
            self._transfer_manager().download(bucket, key, writer, subscribers=[_KnownSize(size)]).result()
        gets = max(1, -(-size // PART_BYTES)) if size >= MULTIPART_THRESHOLD else 1
        return memoryview(memory)[: writer.written], gets

    def close(self) -> None:
        with self._lock:
            if self._manager is not None:
                self._manager.shutdown()
                self._manager = None
