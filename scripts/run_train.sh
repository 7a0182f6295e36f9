#!/usr/bin/env bash
# Single-process training.
#   bash scripts/run_train.sh [train.py options...]
#   bash scripts/run_train.sh --config_path configs/abpn_M4C28_x3.yaml --train_path ../shared/data/train
# Output (checkpoints, state, logs) goes to --ckpt_dir; the console is also saved to
# <ckpt_dir>/console.log. Continue an interrupted run with the same options plus --resume True.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
exec "$PY" train.py "$@"
