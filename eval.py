"""Evaluate a super-resolution model: PSNR/SSIM on DIV2K and benchmark sets.

    python eval.py --config_path DIV2K_config.yaml --scale 2
    python eval.py --model abpn --scale 3 --pre_trained abpn_x3.ckpt \
        --data_path /data --eval_datasets Set5,Set14
    python eval.py --pre_trained abpn_M4C28_x3_int8.tflite --data_path /data --eval_datasets Set5
        (an exported .onnx, .ort, .mindir or .tflite file: model and scale come from the file)
"""
import sys

import model_utils  # noqa: F401  (CPU runtime defaults before mindspore loads)
from model_utils.entry import run_entry


def _engine():
    from src.engine.evaluate import run_evaluation  # pylint: disable=import-outside-toplevel
    return run_evaluation


def _outputs(config, resolve):
    """The report JSON (or the folder it goes to), SR images and a calibrated checkpoint, checked before work."""
    report = ("file", "result_file", config.result_file) if config.result_file else \
        ("folder", "output_path", resolve(config.output_path))
    sr_images = ("folder", "output_path", resolve(config.output_path) if config.save_sr else "")
    quant_ckpt = ("file", "save_quant_ckpt", resolve(config.save_quant_ckpt) if config.save_quant_ckpt else "")
    return [report, sr_images, quant_ckpt]


def main(argv=None):
    return run_entry(argv, "eval", "Evaluate an SR model (PSNR/SSIM).", _engine, outputs=_outputs)


if __name__ == "__main__":
    sys.exit(main())
