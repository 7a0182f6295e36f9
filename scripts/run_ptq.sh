#!/usr/bin/env bash
# PTQ sweep (methods x bit widths) -> Markdown table + PSNR-vs-bits plot under output_path.
#   bash scripts/run_ptq.sh --model abpn --scale 3 --pre_trained abpn_x3.ckpt \
#       --data_path ../shared/data --eval_datasets Set5,Set14 --calib_path ../shared/data/train
# Optional: --methods minmax,dbdc,dbdc_pac --bits 8,6,4 and any eval.py flag.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
python "$ROOT/scripts/ptq_sweep.py" --config_path "${CONFIG_PATH:-$ROOT/DIV2K_config.yaml}" "$@"
