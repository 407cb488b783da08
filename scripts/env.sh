#!/usr/bin/env bash
# Sourced by demo.sh and test.sh: one virtual environment in .venv with the locked set of
# versions in requirements.lock (a constraints file), so that a new release of any
# dependency cannot change what the two commands install. `scripts/lock.sh` refreshes the
# lock on purpose; `scripts/test-latest.sh` runs the suite against the newest releases.
# Usage: source scripts/env.sh EXTRAS   (EXTRAS is "" or "[dev]")
set -euo pipefail
PYTHON=${PYTHON:-python3}
export NO_ALBUMENTATIONS_UPDATE=1
LOCK=requirements.lock
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=".venv/.shardsmith-installed$1"
# Reinstall only when the lock or the project's metadata changed since the last install.
if [ ! -f "$stamp" ] || [ "$LOCK" -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -c "$LOCK" pip setuptools wheel
  # The build backend comes from the lock too (no isolated build env with the newest setuptools).
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-build-isolation \
    -c "$LOCK" -e ".$1"
  touch "$stamp"
fi
# A build can leave shardsmith.egg-info in the checkout; Python would read its (maybe
# stale) metadata before the installed one, entry points included.
rm -rf shardsmith.egg-info
