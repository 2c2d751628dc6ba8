"""The generic runtime run by AWS Lambda and by the local worker processes."""

from .handler import handler

__all__ = ["handler"]
