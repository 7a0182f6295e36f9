"""Export a model for mobile runtimes: MindIR, ONNX (float or int8 QDQ) or AIR.

    python export.py --config_path DIV2K_config.yaml --model abpn --scale 3 \
        --pre_trained abpn_x3.ckpt --file_format ONNX
    python export.py --model abpn --scale 3 --pre_trained abpn_x3_w8a8.ckpt --file_format ONNX --quant int8
"""
import sys

import model_utils  # noqa: F401  (CPU runtime defaults before mindspore loads)
from model_utils.config import get_config
from model_utils.device_adapter import device_info


def main(argv=None):
    config = get_config(argv, description="Export an SR model (MINDIR, ONNX, AIR).")
    from src.engine.context import init_context  # pylint: disable=import-outside-toplevel
    from src.errors import USER_ERRORS  # pylint: disable=import-outside-toplevel
    from src.export.exporter import run_export  # pylint: disable=import-outside-toplevel
    try:
        init_context(config.device_target, config.mode, device_info(config)["device_id"])
        run_export(config)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
