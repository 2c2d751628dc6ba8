"""Deploying lambdamr's runtime to AWS Lambda: ``deploy``, ``status``, ``teardown``, ``clean``,
``rotate_key``.

The same four operations as the ``lambdamr`` command line::

    from lambdamr.deploy import deploy
    print(deploy(region="eu-west-1", packages=["scikit-learn"]))
"""

from .deployer import DeployReport, clean, deploy, status, teardown
from .errors import DeployError, LayerPlatformError, LayerTooLargeError, ResourceNotOursError
from .options import DeployOptions
from .secret import rotate_key

__all__ = [
    "DeployError",
    "DeployOptions",
    "DeployReport",
    "LayerPlatformError",
    "LayerTooLargeError",
    "ResourceNotOursError",
    "clean",
    "deploy",
    "rotate_key",
    "status",
    "teardown",
]
