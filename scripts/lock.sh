#!/usr/bin/env bash
# Refresh requirements.lock on purpose: resolve the project's ranges (pyproject.toml, with
# the dev extras) afresh in a new virtual environment, pip's cache off, and freeze what
# pip chose. Run the tests with the new lock before committing it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" shardsmith.egg-info build' EXIT
"$PYTHON" -m venv "$tmp/venv"
export PIP_NO_CACHE_DIR=1 NO_ALBUMENTATIONS_UPDATE=1
"$tmp/venv/bin/python" -m pip install --quiet --upgrade pip setuptools wheel
"$tmp/venv/bin/python" -m pip install --quiet ".[dev]"
{
  echo "# The locked versions the README's two commands install (a pip constraints file)."
  echo "# Made by scripts/lock.sh on $(date -u +%Y-%m-%d) with $("$tmp/venv/bin/python" --version)."
  "$tmp/venv/bin/python" -m pip freeze --all | grep -viE '^(#|-e |shardsmith)' | LC_ALL=C sort -f
} > requirements.lock
echo "requirements.lock: $(grep -vc '^#' requirements.lock) packages"
