#!/usr/bin/env bash
# Single-process training from any folder (relative paths are taken from where you run it).
#   bash scripts/run_train.sh [train.py options...]
#   bash scripts/run_train.sh --config_path configs/abpn_M4C28_x3.yaml --train_path ../shared/data/train
# Checkpoints, resumable states and logs go to --ckpt_dir (train.py prints where, first); the console
# is also appended to $CONSOLE_LOG (default ./train_console.log). Ctrl-C writes a resumable state;
# continue with the same options plus --resume True. The exit code is train.py's.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python}"
CONSOLE_LOG="${CONSOLE_LOG:-./train_console.log}"
echo "console: $CONSOLE_LOG"
# tee -i: Ctrl-C reaches train.py (which writes its state) but not tee, which keeps the last lines
"$PY" "$ROOT/train.py" "$@" 2>&1 | tee -i -a "$CONSOLE_LOG"
