#!/usr/bin/env bash
# Set up a virtual environment with everything the tests need, run the gates, then the whole suite.
# Usage: bash scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
# The dashboard's end-to-end tests drive Debian's headless Chromium (tests/dashboard/): a
# machine without it gets it from apt (as root, or through sudo); without apt they fail
# with what to install.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    if command -v apt-get >/dev/null; then
        as_root=""
        [ "$(id -u)" -eq 0 ] || as_root="sudo"
        $as_root apt-get update -q
        DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -q chromium chromium-driver
    else
        echo "scripts/test.sh: no apt-get here: install chromium and its chromedriver for tests/dashboard" >&2
    fi
fi
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
# Gates before any test runs: lint, and strict typing of the package (settings in mypy.ini).
.venv/bin/ruff check lambdamr tests benchmarks examples
.venv/bin/mypy
# pytest exits 5 when it collected no test: with `set -e` that fails the run too.
# One pytest worker per core (pytest-xdist), at most 4: each worker starts its own moto server
# and Lambda stand-in (~0.5 GB), and the suite gains little beyond that. A test file stays on one
# worker, so module-scoped fixtures (a deployed stand-in, a shared executor) are built once.
# `-n 0` runs it serially.
exec .venv/bin/python -m pytest -n auto --maxprocesses 4 --dist loadfile "$@"
