"""Building the layer (pip for Lambda's platform, pruning, size limits) and the function
package (runtime code only). pip itself is replaced by a fake that writes small packages."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from lambdamr.deploy import LayerTooLargeError, layer
from lambdamr.deploy.errors import DeployError

from .conftest import fake_pip


def test_the_pip_command_targets_lambdas_platform():
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
        "--platform",
        "manylinux_2_28_x86_64",
        "--platform",
        "manylinux2014_x86_64",
        "--no-compile",
        "--target",
        "/tmp/t/python",
        "cloudpickle",
        "numpy",
    ]
    arm = layer.pip_command(["tblib"], "t", "3.11", "arm64")
    assert arm[arm.index("--platform") + 1] == "manylinux_2_28_aarch64" and "manylinux2014_aarch64" in arm


def test_base_packages_come_first_without_duplicates():
    assert layer.layer_packages(["numpy", "scikit-learn"]) == ["cloudpickle", "tblib", "numpy", "scikit-learn"]


def test_the_layer_zip_holds_python_folder_without_tests(tmp_path):
    build = layer.build_layer("3.12", "x86_64", ["scikit-learn"], workdir=tmp_path, pip=fake_pip)
    names = zipfile.ZipFile(io.BytesIO(build.zip_bytes)).namelist()
    assert "python/numpy/__init__.py" in names and "python/scikit_learn/__init__.py" in names
    assert all(name.startswith("python/") for name in names)
    assert not any("/tests/" in name for name in names)  # pruned
    assert build.packages == ("cloudpickle", "tblib", "numpy", "scikit-learn")
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


def test_the_function_package_holds_only_the_runtime():
    names = zipfile.ZipFile(io.BytesIO(layer.function_package())).namelist()
    assert "lambdamr/runtime/handler.py" in names and "lambdamr/storage/s3.py" in names
    assert not any(part in name for name in names for part in ("executor", "scheduler", "backends", "deploy", "cli"))
    assert layer.function_package() == layer.function_package()  # stable hash: idempotent deploys


def test_the_function_package_imports_on_its_own(tmp_path):
    zipfile.ZipFile(io.BytesIO(layer.function_package())).extractall(tmp_path)
    code = "import lambdamr.runtime.handler as h, lambdamr; print(lambdamr.__file__); print(h.handler.__name__)"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [str(tmp_path / "lambdamr" / "__init__.py"), "handler"]
    assert layer.code_sha256(b"abc") == "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
