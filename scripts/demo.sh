#!/usr/bin/env bash
# Set up a virtual environment, then render a Mandelbrot set on the embedded local backend.
# Usage: bash scripts/demo.sh [mandelbrot options, see --help]
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[examples]'
exec .venv/bin/python -m examples.mandelbrot "$@"
