"""Evaluate a super-resolution model: PSNR/SSIM on DIV2K and benchmark sets.

    python eval.py --config_path DIV2K_config.yaml --scale 2
    python eval.py --model abpn --scale 3 --pre_trained abpn_x3.ckpt \
        --data_path /data --eval_datasets Set5,Set14
"""
import sys

import model_utils  # noqa: F401  (CPU runtime defaults before mindspore loads)
from model_utils.config import get_config
from model_utils.device_adapter import device_info


def main(argv=None):
    config = get_config(argv, description="Evaluate an SR model (PSNR/SSIM).")
    from src.engine.context import init_context  # pylint: disable=import-outside-toplevel
    from src.engine.evaluator import run_evaluation  # pylint: disable=import-outside-toplevel
    from src.errors import USER_ERRORS  # pylint: disable=import-outside-toplevel
    try:
        init_context(config.device_target, config.mode, device_info(config)["device_id"])
        run_evaluation(config)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
