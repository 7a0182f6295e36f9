#!/usr/bin/env bash
# Data-parallel training with N workers on this machine via msrun (MindSpore's launcher).
#   bash scripts/run_distribute_train.sh N [train.py options...]
#   bash scripts/run_distribute_train.sh 2 --config_path configs/sesr_M5_x2.yaml --train_path ../shared/data/train
# Works on CPU (loopback), GPU and Ascend. Each worker reads its own shard of every
# global batch (global batch = N x --batch_size); gradients are averaged; only rank 0
# validates and writes checkpoints and logs. Worker logs: $LOG_DIR/worker_<rank>.log
# (default ./outputs/msrun_logs). MASTER_PORT (default 8118) must be free.
set -euo pipefail
if [ $# -lt 1 ] || ! [[ "$1" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: bash scripts/run_distribute_train.sh N [train.py options...]  (N = number of workers)" >&2
  exit 2
fi
N="$1"; shift
ROOT="$(cd "$(dirname "$0")/.." && pwd)"  # no cd: relative paths are the caller's
PY="${PYTHON:-python}"
LOG_DIR="${LOG_DIR:-./outputs/msrun_logs}"
mkdir -p "$LOG_DIR"
# msrun starts each worker with the first `python` on PATH: make it this interpreter.
PATH="$(dirname "$(command -v "$PY")"):$PATH" exec "$PY" -m mindspore.parallel.cluster.run \
  --worker_num="$N" --local_worker_num="$N" --master_addr=127.0.0.1 --master_port="${MASTER_PORT:-8118}" \
  --log_dir="$LOG_DIR" --join=True "$ROOT/train.py" "$@"
