"""Deploying lambdamr's runtime to AWS Lambda: ``plan_deploy``, ``deploy``, ``status``,
``teardown``, ``clean`` (``clean_preview``), ``rotate_key``.

The same operations as the ``lambdamr`` command line::

    from lambdamr.deploy import deploy
    print(deploy(region="eu-west-1", packages=["scikit-learn"]))
"""

from lambdamr.deploy.deployer import DeployReport, clean, clean_preview, deploy, status, teardown
from lambdamr.deploy.options import DeployOptions
from lambdamr.deploy.plan import DeployPlan
from lambdamr.deploy.planner import plan_deploy
from lambdamr.deploy.rotation import rotate_key
from lambdamr.errors import DeployError, LayerPlatformError, LayerTooLargeError, ResourceNotOursError

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
