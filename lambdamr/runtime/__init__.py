"""The generic runtime run by AWS Lambda and by the local worker processes.

The entry point is ``lambdamr.runtime.handler.handler`` (the Lambda handler string).
"""
