#!/usr/bin/env bash
# Command 2: the same .venv with the dev extras, then the whole test suite (pytest).
# Extra arguments go to pytest (e.g. -k resume).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export NO_ALBUMENTATIONS_UPDATE=1
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"
exec .venv/bin/python -m pytest -q "$@"
