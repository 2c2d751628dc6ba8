"""Deploying lambdamr's runtime to AWS Lambda: ``plan_deploy``, ``deploy``, ``status``,
``teardown``, ``clean`` (``clean_preview``), ``rotate_key``.

The same operations as the ``lambdamr`` command line::

    from lambdamr.deploy import deploy
    print(deploy(region="eu-west-1", packages=["scikit-learn"]))
"""

from .deployer import DeployReport, clean, clean_preview, deploy, status, teardown
from .errors import DeployError, LayerPlatformError, LayerTooLargeError, ResourceNotOursError
from .options import DeployOptions
from .plan import DeployPlan
from .planner import plan_deploy
from .secret import rotate_key

__all__ = [
    "DeployError",
    "DeployOptions",
    "DeployPlan",
    "DeployReport",
    "LayerPlatformError",
    "LayerTooLargeError",
    "ResourceNotOursError",
    "clean",
    "clean_preview",
    "deploy",
    "plan_deploy",
    "rotate_key",
    "status",
    "teardown",
]
