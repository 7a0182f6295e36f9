"""Per-layer quantization sensitivity of a checkpoint: PSNR with one layer quantized at a time.

    python scripts/quant_sensitivity.py --model etds --variant M4C32 --scale 3 --pre_trained etds_x3.ckpt \
        --data_path ../shared/data --eval_datasets Set5,Set14 --calib_path ../shared/data/train \
        --w_bit 8 --a_bit 8 [--quant_method dbdc] [--equalize True] [--output_path ./outputs]

Every flag is an eval.py flag (``--quant_method`` defaults to dbdc here). Calibrates once, then
for every quantizable layer of the deploy form measures PSNR (eval protocol) with only its
input activation, only its weight, and both quantized, plus all weights / all activations /
all; prints the table and writes ``<output_path>/sensitivity_<model>_<variant>_x<scale>_w<b>a<b>_<method>.{md,json}``
(:mod:`src.engine.sensitivity`). A bad option or input is one line, exit code 2.
"""
import sys

import _bootstrap  # noqa: E402,F401  pylint: disable=unused-import,wrong-import-position  (the project root on sys.path)

import model_utils  # noqa: E402,F401  (CPU runtime defaults before mindspore loads)
from model_utils.entry import run_entry  # noqa: E402


def _engine():
    from src.engine.sensitivity import run_sensitivity  # pylint: disable=import-outside-toplevel
    return run_sensitivity


def _outputs(config, resolve):
    return [("folder", "output_path", resolve(config.output_path))]


def main(argv=None):
    return run_entry(argv, "eval", "Per-layer quantization sensitivity (PSNR with one layer quantized at a time).",
                     _engine, outputs=_outputs, needs=False)


if __name__ == "__main__":
    sys.exit(main())
