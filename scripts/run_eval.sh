#!/usr/bin/env bash
# Evaluate a model: bash scripts/run_eval.sh [extra eval.py flags...]
#   bash scripts/run_eval.sh --scale 3 --pre_trained abpn_x3.ckpt --data_path /data --eval_datasets Set5,Set14
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
python "$ROOT/eval.py" --config_path "${CONFIG_PATH:-$ROOT/DIV2K_config.yaml}" "$@"
