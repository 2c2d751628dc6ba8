"""Help that is whole: ``python -m lambdamr``, every option's default, every script's description."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lambdamr.cli import build_parser
from lambdamr.cli.help import options_without_default
from lambdamr.deploy.package import package_entries
from lambdamr.deploy.runtimes import LAMBDA_PYTHONS
from lambdamr.runtime.remote_modules import REMOTE_MODULES

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p for folder in ("examples", "benchmarks") for p in (ROOT / folder).glob("*.py") if p.name != "__init__.py")
#: scripts whose options this change gave defaults; chaos.py, chaos_aws.py, invoke.py are others'
DEFAULTS_SHOWN = {"mandelbrot", "random_forest", "sort", "wordcount", "seed_figure", "shuffle", "overhead"}
_OPTION = re.compile(r"^  (-[\w-]+(?:, -[\w-]+)*)( \S)?")


def _script_param(path: Path) -> object:
    return pytest.param(path, id=f"{path.parent.name}/{path.name}")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)


def test_python_m_lambdamr_is_the_cli():
    result = _run("-m", "lambdamr", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: lambdamr ")
    assert _run("-m", "lambdamr", "--version").stdout.startswith("lambdamr ")
    result = _run("-m", "lambdamr", "teardown", "--help")
    assert result.returncode == 0 and "--delete-user-objects" in result.stdout and "--yes" in result.stdout


def test_main_stays_out_of_the_import_and_of_the_function_package():
    code = "import sys, lambdamr; print(sorted(m for m in sys.modules if m.startswith('lambdamr')))"
    assert _run("-c", code).stdout.strip() == "['lambdamr', 'lambdamr._version']"  # still lazy
    assert "lambdamr.__main__" not in REMOTE_MODULES
    assert not any(name.endswith("__main__.py") or name.startswith("lambdamr/cli") for name in package_entries())


def test_every_option_of_lambdamr_shows_its_default():
    assert options_without_default(build_parser()) == []


def test_deploy_offers_the_pythons_lambda_runs():
    deploy = build_parser()._subparsers._group_actions[0].choices["deploy"]  # type: ignore[union-attr]
    (action,) = [a for a in deploy._actions if "--python-version" in a.option_strings]
    assert tuple(action.choices) == LAMBDA_PYTHONS and "3.9" not in action.choices


def _first_paragraph(script: Path) -> str:
    doc = ast.get_docstring(ast.parse(script.read_text())) or ""
    return " ".join(doc.split("\n\n")[0].split())


@pytest.mark.parametrize("script", [_script_param(p) for p in SCRIPTS])
def test_every_script_help_is_whole(script):
    result = _run(str(script), "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    paragraph = _first_paragraph(script)
    assert paragraph and paragraph in " ".join(result.stdout.split()), f"{script.name} --help cuts its description"
    if script.stem in DEFAULTS_SHOWN:
        blocks: list[list[str]] = []
        for line in result.stdout.split("options:", 1)[1].splitlines():
            match = _OPTION.match(line)
            if match:
                blocks.append([line] if match.group(2) else [])  # on/off flags have no value to default
            elif blocks and blocks[-1]:
                blocks[-1].append(line)
        missing = [block[0].split()[0] for block in blocks if block and "default" not in " ".join(block)]
        assert missing == [], f"{script.name}: no default shown for {missing}"
