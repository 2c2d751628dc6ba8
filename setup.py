"""Packaging for lambdamr. Runtime dependencies are those the Lambda layer carries too."""

from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version: dict = {}
exec((here / "lambdamr" / "_version.py").read_text(), version)

EXAMPLES = ["scikit-learn>=1.3", "matplotlib>=3.7", "pandas>=2.0"]  # pandas: the Lending Club CSV loader
TEST = [
    "pytest>=7.4",
    "pytest-timeout>=2.2",  # a hung job fails its test instead of stalling CI for 90 minutes
    # the suite runs on up to 4 cores (scripts/test.sh: -n auto --maxprocesses 4): most of its time is
    # spent waiting on worker processes, moto and the Lambda stand-in, not computing
    "pytest-xdist>=3.5",
    "moto[server]>=5.0",  # S3/IAM/Lambda mocks, and the S3 server on 127.0.0.1 for real HTTP
    # AWS's runtime interface client: the Lambda stand-in (lambdamr.testing.lambda_service)
    # runs the deployed handler under it, as Lambda's Python runtimes do
    "awslambdaric>=3.0",
    # the gates scripts/test.sh runs before pytest: lint, and `mypy --strict` (mypy.ini)
    "ruff>=0.5",
    "mypy>=1.10",
    # types for mypy: boto3's clients (one stubs package per AWS service the code calls), tqdm
    "boto3-stubs[s3,lambda,iam,sts,secretsmanager,logs]>=1.35",
    "types-tqdm>=4.66",
    # drives Debian's headless chromium (apt: chromium chromium-driver) in the dashboard's
    # end-to-end tests; scripts/test.sh installs the browser
    "selenium>=4.15",
    *EXAMPLES,
]

setup(
    name="lambdamr",
    version=version["__version__"],
    description="AWS Lambda as a massively parallel computer for ordinary Python functions",
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["lambdamr", "lambdamr.*"]),
    package_data={
        "lambdamr": ["py.typed"],  # PEP 561: users' type checkers read lambdamr's own annotations
        "lambdamr.dashboard": ["static/*"],  # the dashboard's page, script and style
    },
    install_requires=[
        "blake3>=1.0",  # the digest of big buffers and shuffle segments: 2.6x SHA-256 (lambdamr.data.digest)
        "boto3>=1.35",  # S3 conditional writes (IfNoneMatch) need 1.35+
        "cloudpickle>=3.0",
        "numpy>=1.24",
        "tblib>=3.0",
        "tqdm>=4.66",  # progress bars in terminals and notebooks
    ],
    extras_require={"examples": EXAMPLES, "plot": ["matplotlib>=3.7"], "test": TEST},
    entry_points={"console_scripts": ["lambdamr = lambdamr.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Operating System :: POSIX :: Linux",
    ],
)
