#!/usr/bin/env bash
# Command 1: a virtual environment in .venv with the locked versions (requirements.lock),
# shardsmith installed, the built-in demo corpus generated (procedurally, no download) and
# recipes/demo_in_car.yaml run on a local Ray instance. Extra arguments go to
# `shardsmith run` (e.g. --workers 1).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh ""
.venv/bin/shardsmith demo-corpus demo_data
.venv/bin/shardsmith run recipes/demo_in_car.yaml --out out/demo_in_car "$@"
