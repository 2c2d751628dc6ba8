"""The AWS Lambda backend: invokes, the fast client, the function, errors, grants, versions."""
