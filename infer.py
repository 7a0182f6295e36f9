"""Upscale your own images with a checkpoint, MindIR or ONNX file (tiled for large images).

    python infer.py --model abpn --scale 3 --pre_trained abpn_x3.ckpt --input_path photos/ --output_path out/
    python infer.py --file_name abpn_M4C28_x3.onnx --input_path photo.png --output_path out/
"""
import sys

import model_utils  # noqa: F401  (CPU runtime defaults before mindspore loads)
from model_utils.config import get_config
from model_utils.device_adapter import device_info


def main(argv=None):
    config = get_config(argv, description="Upscale images with an SR model.")
    from src.engine.context import init_context  # pylint: disable=import-outside-toplevel
    from src.engine.upscale import run_upscale  # pylint: disable=import-outside-toplevel
    from src.errors import USER_ERRORS  # pylint: disable=import-outside-toplevel
    try:
        init_context(config.device_target, config.mode, device_info(config)["device_id"])
        run_upscale(config)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
