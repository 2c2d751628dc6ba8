"""A Lambda stand-in made of real parts, for tests and benchmarks (never deployed).

``LambdaService`` answers the Invoke API on 127.0.0.1 and runs each invocation in an
execution environment started the way Lambda starts one: AWS's runtime interface client
running the deployed handler with only the uploaded function package and layers on its path.
See ``service.py`` for the data flow and ``docs/aws.md`` for what it reproduces and what not.
"""

from lambdamr.testing.lambda_service.code_store import CodeStore
from lambdamr.testing.lambda_service.faults import Faults
from lambdamr.testing.lambda_service.service import ASYNC_PAYLOAD_LIMIT, SYNC_PAYLOAD_LIMIT, Delivery, LambdaService

__all__ = ["ASYNC_PAYLOAD_LIMIT", "SYNC_PAYLOAD_LIMIT", "CodeStore", "Delivery", "Faults", "LambdaService"]
