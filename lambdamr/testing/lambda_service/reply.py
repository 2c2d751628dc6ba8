"""What the stand-in answers a Lambda API request with: a status, a body, headers."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def error_reply(status: int, code: str, message: str, **extra: Any) -> Reply:
    """A Lambda API error: the code in ``x-amzn-ErrorType`` and a JSON document."""
    doc = {"Type": "User", "message": message, **extra}
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": code, "x-amzn-RequestId": str(uuid.uuid4())}
    return Reply(status, json.dumps(doc).encode(), headers)
