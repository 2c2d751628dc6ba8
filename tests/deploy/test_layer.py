"""Building the layer: pip for the runtime's platform, pruning, size limits. pip itself is
replaced by a fake that writes small packages (tests/deploy/test_glibc.py checks real ones; the
function package has tests/deploy/test_function_package.py)."""

from __future__ import annotations

import io
import os
import sys
import zipfile
from pathlib import Path

import pytest

from lambdamr.deploy import LayerTooLargeError, layer
from lambdamr.errors import DeployError
from tests.aws_fixtures import fake_pip


def test_the_pip_command_targets_the_runtimes_platform():
    assert layer.pip_command(["cloudpickle", "numpy"], "/tmp/t/python", "3.12", "x86_64") == [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        "3.12",
        *[arg for minor in range(34, 16, -1) for arg in ("--platform", f"manylinux_2_{minor}_x86_64")],
        "--platform",
        "manylinux2014_x86_64",
        "--no-compile",
        "--target",
        "/tmp/t/python",
        "cloudpickle",
        "numpy",
    ]


@pytest.mark.parametrize(
    ("python", "architecture", "newest", "too_new"),
    [
        ("3.10", "x86_64", "manylinux_2_26_x86_64", "manylinux_2_27_x86_64"),  # Amazon Linux 2, glibc 2.26
        ("3.11", "arm64", "manylinux_2_26_aarch64", "manylinux_2_28_aarch64"),
        ("3.12", "arm64", "manylinux_2_34_aarch64", "manylinux_2_35_aarch64"),  # Amazon Linux 2023, glibc 2.34
        ("3.13", "x86_64", "manylinux_2_34_x86_64", "manylinux_2_35_x86_64"),
        ("3.14", "x86_64", "manylinux_2_34_x86_64", "manylinux_2_35_x86_64"),
    ],
)
def test_platform_tags_follow_the_runtimes_glibc(python, architecture, newest, too_new):
    tags = layer.platforms(python, architecture)
    machine = "aarch64" if architecture == "arm64" else "x86_64"
    assert tags[0] == newest and too_new not in tags
    assert tags[-2:] == [f"manylinux_2_17_{machine}", f"manylinux2014_{machine}"]


def test_lambdas_runtimes_are_offered_and_the_default_is_the_drivers(monkeypatch):
    from lambdamr.deploy import DeployOptions, runtimes
    from lambdamr.errors import ConfigurationError

    assert runtimes.LAMBDA_PYTHONS == ("3.10", "3.11", "3.12", "3.13", "3.14")
    assert DeployOptions().python_version == "{}.{}".format(*sys.version_info[:2])
    assert DeployOptions(python_version="3.14").runtime == "python3.14"
    with pytest.raises(ConfigurationError, match=r"'3.9': AWS Lambda runs Python 3.10, 3.11, 3.12, 3.13, 3.14"):
        DeployOptions(python_version="3.9")
    monkeypatch.setattr(runtimes, "driver_python", lambda: "3.15")
    options = DeployOptions()  # status, teardown and clean still work from this driver
    with pytest.raises(ConfigurationError, match="this driver runs Python 3.15, which AWS Lambda does not offer"):
        _ = options.lambda_runtime
    assert DeployOptions(python_version="3.12").runtime == "python3.12"


def test_base_packages_come_first_without_duplicates():
    assert layer.layer_packages(["numpy", "scikit-learn"]) == ["cloudpickle", "tblib", "numpy", "blake3", "scikit-learn"]


def test_the_layer_zip_holds_python_folder_without_tests(tmp_path):
    build = layer.build_layer("3.12", "x86_64", ["scikit-learn"], workdir=tmp_path, pip=fake_pip)
    names = zipfile.ZipFile(io.BytesIO(build.zip_bytes)).namelist()
    assert "python/numpy/__init__.py" in names and "python/scikit_learn/__init__.py" in names
    assert all(name.startswith("python/") for name in names)
    assert not any("/tests/" in name for name in names)  # pruned
    assert build.packages == ("cloudpickle", "tblib", "numpy", "blake3", "scikit-learn")
    assert not build.needs_s3_upload and build.unzipped_size < 2000


def test_the_layer_zip_is_deterministic(tmp_path):
    first = layer.build_layer("3.12", "x86_64", [], workdir=tmp_path / "a", pip=fake_pip)
    second = layer.build_layer("3.12", "x86_64", [], workdir=tmp_path / "b", pip=fake_pip)
    assert first.zip_bytes == second.zip_bytes and first.spec_hash == second.spec_hash
    assert layer.layer_spec_hash(["numpy"], "3.12", "x86_64") != layer.layer_spec_hash(["numpy"], "3.12", "arm64")


def test_a_layer_over_250_mb_names_what_to_drop(tmp_path, monkeypatch):
    def heavy_pip(command):
        fake_pip(command)
        target = Path(command[command.index("--target") + 1])
        (target / "scipy").mkdir(exist_ok=True)
        (target / "scipy" / "_big.so").write_bytes(os.urandom(300_000))

    monkeypatch.setattr(layer, "UNZIPPED_LIMIT", 250_000)
    with pytest.raises(LayerTooLargeError, match=r"largest packages are scipy \(0 MB\).*drop one with fewer --package"):
        layer.build_layer("3.12", "x86_64", ["scipy"], workdir=tmp_path, pip=heavy_pip)


def test_the_function_counts_toward_the_unzipped_limit():
    layer.check_sizes(100, {"a": 100}, function_unzipped=100)
    with pytest.raises(LayerTooLargeError, match="over AWS Lambda's 250 MB limit"):
        layer.check_sizes(layer.UNZIPPED_LIMIT, {"numpy": layer.UNZIPPED_LIMIT}, function_unzipped=1)


def test_a_failing_pip_says_why(tmp_path):
    failing = [sys.executable, "-c", "import sys; sys.stderr.write('no matching distribution for foo'); sys.exit(1)"]
    with pytest.raises(DeployError, match="(?s)no matching distribution for foo.*manylinux wheel"):
        layer.run_pip(failing)


def test_the_cli_offers_exactly_lambdas_runtimes(capsys):
    from lambdamr.cli import build_parser

    assert build_parser().parse_args(["deploy", "--python-version", "3.14"]).python_version == "3.14"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["deploy", "--python-version", "3.9"])
    assert "invalid choice: '3.9' (choose from" in capsys.readouterr().err


def test_a_layer_package_of_another_version_than_the_drivers_is_warned_about(tmp_path):
    # fake_pip installs every package as version 1.0; this driver has newer cloudpickle, tblib,
    # numpy and blake3 (and no "not-installed-here"): those four are reported, with what to do.
    import numpy

    build = layer.build_layer("3.11", "x86_64", ["not-installed-here"], workdir=tmp_path, pip=fake_pip)
    assert build.versions["numpy"] == "1.0" and build.versions["not-installed-here"] == "1.0"
    warnings = layer.version_skew(build.versions, layer.layer_packages(["not-installed-here"]))
    assert [w.split()[3] for w in warnings] == ["cloudpickle", "tblib", "numpy", "blake3"]
    assert f"the layer has numpy 1.0 but this driver has {numpy.__version__}" in warnings[2]
    assert f"install numpy==1.0 here, or pin it in the layer (--package 'numpy=={numpy.__version__}')" in warnings[2]
    assert layer.version_skew({**build.versions, "numpy": numpy.__version__}, ["numpy>=1.24"]) == []
