"""What the deployed function's role may read and write in S3, and the driver's check of it.

``lambdamr deploy`` grants the execution role ``s3:GetObject`` on each *read* prefix and
``s3:PutObject`` on each *write* prefix (the temp prefix is both), and records the same
prefixes, as JSON, in the function's environment variable ``LAMBDAMR_GRANTS``::

    {"temp": "s3://B/lambdamr/", "read": ["s3://B/lambdamr/", "s3://my-data/in/"],
     "write": ["s3://B/lambdamr/", "s3://B/out/"]}

The driver already reads the function's configuration before its first invoke (one
GetFunctionConfiguration, a permission every driver has), so it learns the grants without
``iam:GetRolePolicy``. Tags were the alternative: reading them needs ``lambda:ListTags`` too,
and a tag value holds at most 256 characters. The record is not secret; it names prefixes.

Before launching anything the driver checks every location the runtime will touch — the
job's temp prefix, each ``objects()`` input key, the ``map_reduce`` output prefix, each
``share()`` object — with ``check_grants`` and refuses with the deploy command that adds
what is missing. A grant is a key prefix exactly as IAM sees it: ``s3://B/out/`` allows
``arn:aws:s3:::B/out/*``; ``s3://B/`` the whole bucket.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lambdamr.errors import ConfigurationError

ENV_GRANTS = "LAMBDAMR_GRANTS"
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
#: at most this many locations are named in an error message
_SHOWN = 3


def normalize_location(url: str, *, what: str = "grant") -> str:
    """``s3://bucket/prefix`` as a grant: refuse other schemes and IAM wildcards.

    A bare bucket (``s3://B``) becomes ``s3://B/`` (the whole bucket); the prefix is kept as
    written, because IAM matches it as a plain string prefix.
    """
    if not isinstance(url, str) or not url.startswith("s3://"):
        raise ConfigurationError(f"{what} {url!r}: give an S3 location such as s3://my-data/inputs/")
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not _BUCKET_RE.match(bucket):
        raise ConfigurationError(f"{what} {url!r}: {bucket!r} is not an S3 bucket name")
    if "*" in prefix or "?" in prefix:
        raise ConfigurationError(f"{what} {url!r}: give a key prefix without * or ? (IAM would read them as wildcards)")
    if prefix.startswith("/"):
        raise ConfigurationError(f"{what} {url!r}: S3 keys do not start with '/'")
    return f"s3://{bucket}/{prefix}"


def _split(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


@dataclass(frozen=True)
class Grants:
    """The S3 prefixes the execution role may read and write (each ``s3://bucket/prefix``)."""

    temp: str
    read: tuple[str, ...]
    write: tuple[str, ...]

    @classmethod
    def build(cls, temp: str, read: Iterable[str] = (), write: Iterable[str] = ()) -> Grants:
        """Grants with the temp prefix readable and writable, duplicates dropped, sorted."""
        temp = normalize_location(temp, what="temp prefix")
        reads = {normalize_location(u, what="--read") for u in read} | {temp}
        writes = {normalize_location(u, what="--write") for u in write} | {temp}
        return cls(temp, tuple(sorted(reads)), tuple(sorted(writes)))

    @classmethod
    def parse(cls, text: str) -> Grants:
        """Read the ``LAMBDAMR_GRANTS`` record."""
        try:
            data = json.loads(text)
            return cls.build(data["temp"], data.get("read", ()), data.get("write", ()))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(
                f"the function's {ENV_GRANTS} is not a lambdamr grants record ({exc}); redeploy with `lambdamr deploy`"
            ) from None

    def to_json(self) -> str:
        return json.dumps({"temp": self.temp, "read": list(self.read), "write": list(self.write)}, separators=(",", ":"))

    def allows(self, location: str, *, write: bool) -> bool:
        """Whether ``location`` (a URL; a trailing ``*`` means every key under it) is inside a grant."""
        bucket, key = _split(location.removesuffix("*"))
        for grant in self.write if write else self.read:
            grant_bucket, prefix = _split(grant)
            if grant_bucket == bucket and key.startswith(prefix):
                return True
        return False


def _folder(location: str) -> str:
    """The grant to suggest for a location: its folder (``s3://B/in/a.txt`` -> ``s3://B/in/``)."""
    bucket, key = _split(location.removesuffix("*"))
    folder = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
    return f"s3://{bucket}/{folder}"


def _examples(locations: Sequence[str]) -> str:
    shown = ", ".join(locations[:_SHOWN])
    return shown + (f" and {len(locations) - _SHOWN} more" if len(locations) > _SHOWN else "")


def deploy_command(grants: Grants, *, function_name: str, region: str | None, read: Iterable[str], write: Iterable[str]) -> str:
    """The ``lambdamr deploy`` command line that adds these grants to the deployment."""
    words = ["lambdamr", "deploy"]
    if function_name != "lambdamr-runtime":
        words += ["--function-name", function_name]
    if region:
        words += ["--region", region]
    bucket, temp = _split(grants.temp)
    if temp.rstrip("/") != "lambdamr":
        words += ["--prefix", temp.rstrip("/")]
    words += ["--bucket", bucket]
    for url in sorted(set(read)):
        words += ["--read", url]
    for url in sorted(set(write)):
        words += ["--write", url]
    return " ".join(words)


def check_grants(
    grants: Grants,
    *,
    reads: Iterable[str],
    writes: Iterable[str],
    function_name: str,
    region: str | None,
) -> None:
    """Refuse, before anything runs, a job whose runtime would read or write outside ``grants``.

    Raises:
        ConfigurationError: naming what is outside and the ``lambdamr deploy`` command that
            grants it (grants are kept across deploys, so the command only adds).
    """
    reads, writes = list(dict.fromkeys(reads)), list(dict.fromkeys(writes))
    not_s3 = [u for u in (*reads, *writes) if not u.startswith("s3://")]
    if not_s3:
        raise ConfigurationError(
            f"the Lambda runtime can only reach S3, not {_examples(not_s3)}: upload the data to S3 "
            "and give s3://bucket/prefix locations"
        )
    missing_reads = [u for u in reads if not grants.allows(u, write=False)]
    missing_writes = [u for u in writes if not grants.allows(u, write=True)]
    if not missing_reads and not missing_writes:
        return
    parts = []
    if missing_reads:
        parts.append(f"read {_examples(missing_reads)}")
    if missing_writes:
        parts.append(f"write {_examples(missing_writes)}")
    command = deploy_command(
        grants,
        function_name=function_name,
        region=region,
        read=[_folder(u) for u in missing_reads],
        write=[_folder(u) for u in missing_writes],
    )
    raise ConfigurationError(
        f"the Lambda function {function_name!r} may not {' or '.join(parts)}: its execution role only "
        f"reads {', '.join(grants.read)} and writes {', '.join(grants.write)} (nothing was launched). "
        f"Grant it with `{command}` (grants are kept across deploys; repeat any --package, --memory "
        "or other options you deployed with), or keep the job's data inside the granted prefixes"
    )


__all__ = ["ENV_GRANTS", "Grants", "check_grants", "deploy_command", "normalize_location"]
