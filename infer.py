"""Upscale your own images with a checkpoint or an exported .onnx, .ort, .mindir or .tflite file (tiled for large images).

    python infer.py --model abpn --scale 3 --pre_trained abpn_x3.ckpt --input_path photos/ --output_path out/
    python infer.py --model_file abpn_M4C28_x3.onnx --input_path photo.png --output_path out/
    python infer.py --model_file abpn_M4C28_x3_int8.tflite --input_path photos/ --output_path out/
"""
import sys

import model_utils  # noqa: F401  (CPU runtime defaults before mindspore loads)
from model_utils.entry import run_entry


def _engine():
    from src.engine.upscale_images import run_upscale  # pylint: disable=import-outside-toplevel
    return run_upscale


def _outputs(config, resolve):
    """The folder the upscaled PNGs go to, checked before work."""
    return [("folder", "output_path", resolve(config.output_path))]


def main(argv=None):
    return run_entry(argv, "infer", "Upscale images with an SR model.", _engine, outputs=_outputs)


if __name__ == "__main__":
    sys.exit(main())
