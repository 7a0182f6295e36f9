"""Export a model: TFLite (LiteRT), ORT (ORT-Mobile), ONNX (float or int8 QDQ), MindIR or AIR.

    python export.py --model abpn --scale 3 --pre_trained abpn_x3_w8a8.ckpt --file_format TFLITE --quant int8
    python export.py --config_path DIV2K_config.yaml --model abpn --scale 3 \
        --pre_trained abpn_x3.ckpt --file_format ONNX
    python export.py --model abpn --scale 3 --pre_trained abpn_x3_w8a8.ckpt --file_format ONNX --quant int8

The phone path, one command from float weights (.ckpt, .pth, float .tflite, SavedModel) to the int8
file with its own PSNR, latency and tensor spec (src/engine/phone.py):
    python export.py --pre_trained ABPN_M4C28_x3.pth --model abpn --variant M4C28 --scale 3 --quant int8 \
        --calib_path ../shared/data/train --data_path ../shared/data --eval_datasets Set5,Set14
"""
import sys

import model_utils  # noqa: F401  (CPU runtime defaults before mindspore loads)
from model_utils.entry import run_entry


def _engine():
    """The exporter, or the phone path (calibrate, write, score the file) for --quant int8 from float weights."""
    from src.engine.phone import run_export_entry  # pylint: disable=import-outside-toplevel
    return run_export_entry


def _outputs(config, resolve):
    """The exported file, as the exporter will name it (extension added), checked before work."""
    from src.export.exporter import export_path  # pylint: disable=import-outside-toplevel
    from src.export.sections import export_sections  # pylint: disable=import-outside-toplevel
    del resolve  # export_sections resolves --output_path itself
    option = config.option("export_file")[2:] if config.export_file else "output_path"
    return [("file", option, export_path(export_sections(config)))]


def main(argv=None):
    return run_entry(argv, "export", "Export an SR model (TFLITE, ORT, ONNX, MINDIR, AIR).", _engine, outputs=_outputs)


if __name__ == "__main__":
    sys.exit(main())
