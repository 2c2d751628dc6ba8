"""A job's ``extra_env``: set in the process environment around one task, then restored.

A warm Lambda container or local worker runs other jobs' tasks next, so every variable a
task's job set is put back as it was — restored when the process had it, removed when it
did not — after the task, whatever the task did. The values are never printed or logged
(they may be secrets): an error names the variable only.

Tasks of one process run one at a time on Lambda and on the local workers; the inline
backend, whose tasks are threads of the driver's own process, refuses ``extra_env`` (its
environment is the driver's).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext

_UNCHANGED = nullcontext()


def extra_environment(variables: Mapping[str, str]) -> AbstractContextManager[None]:
    """``variables`` set in ``os.environ`` meanwhile; the previous environment after (no
    work at all for the usual job without variables: this runs for every task)."""
    return _applied(variables) if variables else _UNCHANGED


@contextmanager
def _applied(variables: Mapping[str, str]) -> Iterator[None]:
    before = {name: os.environ.get(name) for name in variables}
    try:
        os.environ.update(variables)
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
