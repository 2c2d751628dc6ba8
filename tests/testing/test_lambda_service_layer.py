"""The layer the stand-in runs is the one the builder makes: what the strict stand-in found
in it (a ``tests`` folder that numpy's own code imports was pruned)."""

from __future__ import annotations

from lambdamr.deploy.layer import prune


def test_pruning_keeps_the_tests_folders_a_package_imports(tmp_path):
    core_tests = tmp_path / "numpy" / "_core" / "tests"
    core_tests.mkdir(parents=True)
    (core_tests / "_natype.py").write_text("pd_NA = object()\n")
    (core_tests / "test_big.py").write_text("import numpy.linalg.tests.helper\n" + "#" * 10_000 + "\n")
    (tmp_path / "numpy" / "testing.py").write_text("from numpy._core.tests._natype import pd_NA\n")
    unused = tmp_path / "numpy" / "linalg" / "tests"
    unused.mkdir(parents=True)
    (unused / "helper.py").write_text("# imported only by another test\n")
    saved = prune(tmp_path)
    assert (core_tests / "_natype.py").exists()  # numpy.testing imports it
    assert not unused.exists() and saved > 0  # only tests import it
