#!/usr/bin/env bash
# Command 2: the same .venv with the dev extras at their locked versions, the layer
# contracts (import-linter) and the whole test suite (pytest). Extra arguments go to
# pytest (e.g. -k resume).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh "[dev]"
.venv/bin/lint-imports
exec .venv/bin/python -m pytest -q "$@"
