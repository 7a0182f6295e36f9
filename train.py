"""Train an SR model (single process).

    python train.py --config_path DIV2K_config.yaml --model abpn --scale 2 \
        --train_path ../shared/data/train --val_data_path ../shared/data --val_datasets Set5
"""
import functools
import sys

import model_utils  # noqa: F401  (CPU runtime defaults before mindspore loads)
from model_utils.entry import run_entry


def _engine():
    from src.engine.trainer import train  # pylint: disable=import-outside-toplevel
    return functools.partial(train, log=functools.partial(print, flush=True))


def _outputs(config, resolve):
    """The checkpoint folder, checked before training starts."""
    return [("folder", "ckpt_dir", resolve(config.ckpt_dir))]


def main(argv=None):
    return run_entry(argv, "train", "Train an SR model.", _engine, extra_errors=(FloatingPointError,), outputs=_outputs)


if __name__ == "__main__":
    sys.exit(main())
