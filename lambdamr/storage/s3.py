"""Storage on Amazon S3 or any S3-compatible endpoint (MinIO, Ceph, moto's server).

Transient errors (5xx, SlowDown, throttling) are retried by botocore's ``standard`` retry
mode with exponential backoff and jitter; what is left after that is translated through one
table (``lambdamr.aws_errors``) into lambdamr's own exceptions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from lambdamr.aws_errors import error_code, translate
from lambdamr.errors import ConfigurationError, StorageError
from lambdamr.storage.base import ObjectInfo, Storage
from lambdamr.storage.transfer import MULTIPART_THRESHOLD, Transfers

#: S3 refuses DeleteObjects with more keys than this.
DELETE_BATCH_LIMIT = 1000

class S3Storage(Storage):
    """Objects in one S3 bucket. ``endpoint_url`` points it at any S3-compatible server."""

    kind = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        max_connections: int = 64,
        client: Any = None,
    ) -> None:
        super().__init__()
        if not bucket or len(bucket) < 3:
            raise ConfigurationError(f"invalid S3 bucket name {bucket!r}: bucket names have 3 to 63 characters")
        self.bucket = bucket
        self.region = region
        self.endpoint_url = endpoint_url
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                retries={"mode": "standard", "max_attempts": 8},
                max_pool_connections=max_connections,
                tcp_keepalive=True,
            )
            client = boto3.session.Session().client(
                "s3", region_name=region, endpoint_url=endpoint_url, config=config
            )
        self.client = client
        self._transfers = Transfers(client)

    def put(self, key: str, data: bytes | memoryview, *, if_absent: bool = False) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        size = len(data)
        try:
            if size > MULTIPART_THRESHOLD and not if_absent:
                self._transfers.upload(self.bucket, key, data)
            else:
                extra = {"IfNoneMatch": "*"} if if_absent else {}
                self.client.put_object(Bucket=self.bucket, Key=key, Body=bytes(data), **extra)
        except ClientError as exc:
            if if_absent and error_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                self.stats.add(puts=1)
                return False
            raise translate(exc, "s3", f"writing {self.url(key)}") from exc
        except BotoCoreError as exc:
            raise translate(exc, "s3", f"writing {self.url(key)}") from exc
        self.stats.add(puts=1, bytes_written=size)
        return True

    def store_buffer(self, key: str, data: bytes | memoryview) -> None:
        """A multipart upload of parts read straight from ``data`` when it is large."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            parts = self._transfers.upload(self.bucket, key, data)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "s3", f"writing {self.url(key)}") from exc
        self.stats.add(puts=parts, bytes_written=memoryview(data).nbytes)

    def load_buffer(self, key: str, size: int) -> memoryview:
        """Parallel ranged GETs into one ``bytearray`` when the object is large."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            view, gets = self._transfers.download(self.bucket, key, size)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "s3", f"reading {self.url(key)}") from exc
        except ValueError as exc:  # larger than its writer said
            raise StorageError(f"reading {self.url(key)}: {exc}") from exc
        self.stats.add(gets=gets, bytes_read=view.nbytes)
        return view

    def close(self) -> None:
        self._transfers.close()

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        kwargs: dict[str, Any] = {}
        if start is not None or end is not None:
            first = start or 0
            if end is not None and end <= first:
                self.stats.add(gets=0)
                return b""
            kwargs["Range"] = f"bytes={first}-" + ("" if end is None else str(end - 1))
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key, **kwargs)["Body"]
            data: bytes = body.read()
        except ClientError as exc:
            if error_code(exc) == "InvalidRange":
                self.stats.add(gets=1)
                return b""
            raise translate(exc, "s3", f"reading {self.url(key)}") from exc
        except BotoCoreError as exc:
            raise translate(exc, "s3", f"reading {self.url(key)}") from exc
        self.stats.add(gets=1, bytes_read=len(data))
        return data

    def list(self, prefix: str, start_after: str = "") -> Iterator[ObjectInfo]:
        from botocore.exceptions import BotoCoreError, ClientError

        token = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": 1000}
            if token:
                kwargs["ContinuationToken"] = token
            elif start_after:
                kwargs["StartAfter"] = start_after
            try:
                page = self.client.list_objects_v2(**kwargs)
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, "s3", f"listing {self.url(prefix)}") from exc
            self.stats.add(lists=1)
            for item in page.get("Contents", []):
                yield ObjectInfo(item["Key"], int(item["Size"]), item["LastModified"].timestamp())
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")

    def delete(self, keys: Iterable[str]) -> int:
        from botocore.exceptions import BotoCoreError, ClientError

        keys = list(keys)
        requests = 0
        for i in range(0, len(keys), DELETE_BATCH_LIMIT):
            batch = keys[i : i + DELETE_BATCH_LIMIT]
            try:
                answer = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, "s3", f"deleting {len(batch)} objects under {self.url()}") from exc
            requests += 1
            self.stats.add(deletes=1)
            errors = [e for e in answer.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if errors:
                first = errors[0]
                raise StorageError(
                    f"could not delete {len(errors)} of {len(batch)} objects in s3://{self.bucket} "
                    f"(first: {first.get('Key')}: {first.get('Code')} {first.get('Message')})"
                )
        return requests

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"kind": self.kind, "bucket": self.bucket}
        if self.region:
            spec["region"] = self.region
        if self.endpoint_url:
            spec["endpoint_url"] = self.endpoint_url
        return spec

    def url(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"
