"""Train an SR model (single process).

    python train.py --config_path DIV2K_config.yaml --model abpn --scale 2 \
        --train_path ../shared/data/train --val_data_path ../shared/data --val_datasets Set5
"""
import functools
import sys

import model_utils  # noqa: F401  (CPU runtime defaults before mindspore loads)
from model_utils.config import get_config
from model_utils.device_adapter import device_info


def main(argv=None):
    config = get_config(argv, description="Train an SR model.")
    from src.engine.context import init_context  # pylint: disable=import-outside-toplevel
    from src.engine.trainer import train  # pylint: disable=import-outside-toplevel
    from src.errors import USER_ERRORS  # pylint: disable=import-outside-toplevel
    try:
        init_context(config.device_target, config.mode, device_info(config)["device_id"])
        train(config, log=functools.partial(print, flush=True))
    except USER_ERRORS + (FloatingPointError,) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
