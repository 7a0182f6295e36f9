"""Convert published SR weights to a MindSpore checkpoint: PyTorch .pth, float .tflite, Keras SavedModel.

    python scripts/convert_weights.py --src ABPN_M4C28_x3.pth --dst abpn_x3.ckpt --model abpn --variant M4C28 --scale 3
    python scripts/convert_weights.py --src ../shared/weights/mlperf_edsr_x2/edsr_f32b5_fp32.tflite --dst edsr_f32b5_x2.ckpt
    python scripts/convert_weights.py --src ../shared/weights/abpn_authors_tf_x3/saved_model --dst abpn_tf_x3.ckpt

- ``.pth``: read without torch and without executing pickled code (src/weights/torch_pickle.py);
  ``--model``, ``--variant``, ``--scale`` name the network.
- ``.tflite`` (float32) or a SavedModel folder (src/weights/tf_import.py): the network is recognised from
  its conv chain (``--model/--variant/--scale`` are checked against it when given); pixels in 0..255
  are proven on a test image (or ``--pixel_range``) and folded into the biases; the converted network
  must give the source's output within 1e-4 of the 0..1 range on two test images, and the line
  printed says the difference measured.

Bad input: one ``error:`` line, exit code 2, nothing written.
"""
import sys

import _bootstrap  # noqa: F401  pylint: disable=unused-import  (the project root on sys.path)
from src.weights.convert_cli import main

if __name__ == "__main__":
    sys.exit(main(description=__doc__))
