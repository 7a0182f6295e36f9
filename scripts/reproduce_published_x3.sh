#!/usr/bin/env bash
# Convert the published x3 weights (ETDS repository) and evaluate them on Set5/Set14.
#   bash scripts/reproduce_published_x3.sh [SHARED_DIR]   (default ../shared)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="$(cd "${1:-$ROOT/../shared}" && pwd)"
OUT="$ROOT/outputs/published_x3"
mkdir -p "$OUT"
cd "$ROOT"
for spec in "abpn M4C28 ABPN_M4C28" "etds M4C32 ETDS_M4C32" "ecbsr M4C16 ECBSR_M4C16"; do
  set -- $spec
  python scripts/convert_torch_weights.py --src "$SHARED/weights/etds_repo_x3/$3_x3.pth" \
    --dst "$OUT/$1_$2_x3.ckpt" --model "$1" --variant "$2" --scale 3
  python eval.py --model "$1" --variant "$2" --scale 3 --pre_trained "$OUT/$1_$2_x3.ckpt" \
    --data_path "$SHARED/data" --eval_datasets Set5,Set14 --result_file "$OUT/$1_$2_x3.json"
done
