"""Every lambdamr module that runs on the remote side, named in one place.

The function package ``lambdamr deploy`` uploads holds exactly these modules (their source
files, nothing else of lambdamr), so this list is what AWS Lambda can import. It must cover:

- what the handler imports (the runtime, protocol, serialization, signing, storage, errors);
- what the objects the driver pickles into tasks refer to *by reference* — ``serialize``
  ships the user's own modules by value but never ``lambdamr``'s, so unpickling a
  ``MapTask``, a ``Shared`` handle or an ``objects()`` chunk imports their modules there:
  ``lambdamr.shuffle.*`` (the remote tasks of ``map_reduce`` and ``map_then_reduce``),
  ``lambdamr.data.shared`` and ``lambdamr.data.objects``;
- what those import in turn, also lazily inside a function (``lambdamr.config``'s validators).

The driver-only modules (executor, scheduler, jobs, futures, backends, deploy, cli, the
shuffle's driver and phases) are not shipped: a cold start never pays for them.
``tests/aws/test_function_package.py`` unpacks the package into an empty folder, imports
every module listed here with only the layer's packages beside it, and fails when a module
the handler or a pickled task needs is missing from the list.
"""

from __future__ import annotations

REMOTE_MODULES: tuple[str, ...] = (
    "lambdamr",  # lazy: importing it loads only _version
    "lambdamr._version",
    "lambdamr.errors",
    "lambdamr.counters",
    "lambdamr.config",  # shuffle.plan validates memory and timeout with it
    "lambdamr.aws_region",  # config imports it
    "lambdamr.protocol",
    "lambdamr.serialize",
    "lambdamr.signing",
    "lambdamr.text",  # short_repr for the shuffle's error messages
    "lambdamr.storage",
    "lambdamr.storage.base",
    "lambdamr.storage.local",
    "lambdamr.storage.s3",
    "lambdamr.runtime",
    "lambdamr.runtime.capture",
    "lambdamr.runtime.handler",
    "lambdamr.runtime.key_source",  # signing.process_key fetches the deployment's key with it
    "lambdamr.runtime.remote_modules",
    "lambdamr.data",
    "lambdamr.data.shared",
    "lambdamr.data.objects",
    "lambdamr.shuffle",  # lazy: importing it loads none of the shuffle's driver side
    "lambdamr.shuffle.format",
    "lambdamr.shuffle.mapper",
    "lambdamr.shuffle.merge",
    "lambdamr.shuffle.output",
    "lambdamr.shuffle.partition",
    "lambdamr.shuffle.plan",
    "lambdamr.shuffle.reducer",
    "lambdamr.shuffle.whole",
)
