"""What each published version and alias of the function carries, and which versions go.

Lambda keeps one event-invoke config per qualifier (``$LATEST``, a version, an alias), with
2 retries and a 6-hour event age by default; each qualifier lambdamr invokes gets retries off
and a short event age here. Versions no alias points to any more are deleted, so they do not
pile up against the region's code storage.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from lambdamr.aws_errors import error_code
from lambdamr.driver.scheduler import LOST_GRACE_S

#: Lambda's bounds of MaximumEventAgeInSeconds
EVENT_AGE_MIN_S, EVENT_AGE_MAX_S = 60, 21600


def max_event_age(timeout_s: float) -> int:
    """How long an asynchronous event may wait in Lambda's queue before Lambda drops it.

    The driver presumes a fire-and-forget attempt lost ``LOST_GRACE_S`` (or a tenth of the
    timeout) after its timeout, and retries it: an event that starts later than that only
    duplicates the retry. Until then the event may be the attempt the driver waits for (held
    back by throttling, which Lambda retries within the event age), so it is not dropped
    sooner. At least Lambda's minimum of 60 s, at most its maximum of 6 h.
    """
    grace = max(LOST_GRACE_S, 0.1 * timeout_s)
    return int(min(EVENT_AGE_MAX_S, max(EVENT_AGE_MIN_S, math.ceil(timeout_s + grace))))


def ensure_no_async_retries(
    client: Any, function_name: str, qualifier: str, timeout_s: float, *, sleep: Callable[[float], None] = time.sleep
) -> bool:
    """Give ``qualifier`` (``$LATEST``, a version or an alias) MaximumRetryAttempts=0 and
    ``max_event_age(timeout_s)``; compare before writing. Return whether it wrote.

    Lambda keeps one event-invoke config per qualifier: the function's does not cover its
    aliases. An existing config is updated (keeping its destinations), a missing one put.
    """
    from botocore.exceptions import ClientError

    wanted = {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": max_event_age(timeout_s)}
    # The unqualified config is $LATEST's (the response's FunctionArn ends in ":$LATEST").
    target = {"FunctionName": function_name, **({"Qualifier": qualifier} if qualifier != "$LATEST" else {})}
    write = client.put_function_event_invoke_config
    try:
        current = client.get_function_event_invoke_config(**target)
        if all(current.get(key) == value for key, value in wanted.items()):
            return False
        write = client.update_function_event_invoke_config
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
    retry_conflicts(lambda: write(**target, **wanted), sleep=sleep)
    return True


def prune_versions(client: Any, function_name: str) -> list[str]:
    """Delete the published versions no alias points to; return their numbers.

    Only versions older than the newest one an alias uses go: a version another driver has
    just published for its alias (``ensure_alias`` publishes, then points the alias) is newer
    than every version aliases pointed to when they were listed, so it is never taken.
    """
    from botocore.exceptions import ClientError

    used: set[str] = set()
    for page in client.get_paginator("list_aliases").paginate(FunctionName=function_name):
        for alias in page.get("Aliases", []):
            used.add(str(alias["FunctionVersion"]))
            used.update((alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights", {}))
    numbered = sorted(int(v) for v in used if v.isdigit())
    if not numbered:
        return []
    deleted = []
    for page in client.get_paginator("list_versions_by_function").paginate(FunctionName=function_name):
        for version in page.get("Versions", []):
            number = str(version.get("Version", ""))
            if not number.isdigit() or number in used or int(number) >= numbered[-1]:
                continue
            try:
                client.delete_function(FunctionName=function_name, Qualifier=number)
                deleted.append(number)
            except ClientError as exc:  # gone already, or an alias took it meanwhile
                if error_code(exc) not in ("ResourceNotFoundException", "ResourceConflictException"):
                    raise
    return deleted


def retry_conflicts(call: Callable[[], Any], *, sleep: Callable[[float], None], attempts: int = 30) -> Any:
    """``call()``, again after a second while Lambda says another update is in progress."""
    from botocore.exceptions import ClientError

    for attempt in range(attempts):
        try:
            return call()
        except ClientError as exc:
            if error_code(exc) != "ResourceConflictException" or attempt == attempts - 1:
                raise
            sleep(1.0)
