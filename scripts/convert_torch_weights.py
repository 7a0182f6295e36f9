"""Convert a published PyTorch SR state dict to a MindSpore checkpoint (the name kept from before
``scripts/convert_weights.py``, which takes the same flags and also float ``.tflite`` files and Keras
SavedModels).

    python scripts/convert_torch_weights.py --src ABPN_M4C28_x3.pth --dst abpn_x3.ckpt \
        --model abpn --variant M4C28 --scale 3

Reads the .pth without torch, without executing pickled code and without trusting its sizes
(every tensor is checked against the bytes really in the file). DataParallel's ``module.`` prefix
is stripped; for BasicSR files ``--key`` picks ``params`` or ``params_ema`` (``auto``: params_ema,
saying so). Bad input: one ``error:`` line, exit code 2, nothing written.
"""
import sys

import _bootstrap  # noqa: F401  pylint: disable=unused-import  (the project root on sys.path)
from src.weights.convert_cli import main

if __name__ == "__main__":
    sys.exit(main(description=__doc__))
