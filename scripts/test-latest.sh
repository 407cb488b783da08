#!/usr/bin/env bash
# Outside CI: the suite against the newest release of every dependency that the
# project's ranges allow (no lock), in a new virtual environment with pip's cache off,
# so that drift shows here before users meet it. Prints what differs from the lock.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
venv=${LATEST_VENV:-$(mktemp -d)/venv}
"$PYTHON" -m venv "$venv"
export PIP_NO_CACHE_DIR=1 NO_ALBUMENTATIONS_UPDATE=1
"$venv/bin/python" -m pip install --quiet --upgrade pip setuptools wheel
"$venv/bin/python" -m pip install --quiet --upgrade -e ".[dev]"
rm -rf shardsmith.egg-info  # stale metadata in the checkout would shadow the installed entry points
echo "newer than requirements.lock:"
"$venv/bin/python" -m pip freeze --all | grep -viE '^(shardsmith|-e )' | sort -f \
  | comm -23 - <(grep -v '^#' requirements.lock | sort -f) | sed 's/^/  /'
"$venv/bin/lint-imports"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
