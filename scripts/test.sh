#!/usr/bin/env bash
# Set up a virtual environment with everything the tests need, run the gates, then the whole suite.
# Usage: bash scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
# Gates before any test runs: lint, and strict typing of the package (settings in mypy.ini).
.venv/bin/ruff check lambdamr tests
.venv/bin/mypy
# pytest exits 5 when it collected no test: with `set -e` that fails the run too.
exec .venv/bin/python -m pytest "$@"
