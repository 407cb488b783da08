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
echo "versions that differ from requirements.lock (the newest releases the ranges allow):"
drift=$(LC_ALL=C comm -23 \
  <("$venv/bin/python" -m pip freeze --all | grep -viE '^(#|-e |shardsmith)' | LC_ALL=C sort) \
  <(grep -v '^#' requirements.lock | LC_ALL=C sort) || true)
echo "${drift:-  (none)}" | sed 's/^\([^ ]\)/  \1/'
"$venv/bin/lint-imports"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
