#!/usr/bin/env bash
# Command 1: a virtual environment in .venv, shardsmith installed, the built-in demo corpus
# generated (procedurally, no download) and recipes/demo_in_car.yaml run on a local Ray
# instance. Extra arguments go to `shardsmith run` (e.g. --workers 1).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export NO_ALBUMENTATIONS_UPDATE=1
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
.venv/bin/shardsmith demo-corpus demo_data
.venv/bin/shardsmith run recipes/demo_in_car.yaml --out out/demo_in_car "$@"
