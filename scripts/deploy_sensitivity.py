"""Where a deployment model loses: PSNR with one kind of the int8 file's roundings left out at a time.

    python scripts/deploy_sensitivity.py --model sesr --variant M5 --scale 2 --pre_trained pretrained/sesr_M5_x2.ckpt \
        --data_path ../shared/data --eval_datasets Set5,Set14 --calib_path ../shared/data/train [--output_path ./outputs]

Every flag is an eval.py flag (``--quant_method`` defaults to dbdc_pac, W8A8: the deployment model).
Calibrates once (or loads a calibrated deployment checkpoint), then evaluates the model without
the conv input/weight rounding, without the int32 bias rounding, without each kind of deployment
site, and (Y models) the float model with only its input on the 8-bit grid; writes
``<output_path>/deploy_sensitivity_<model>_<variant>_x<scale>_<method>.{md,json}``
(:mod:`src.engine.deploy_sensitivity`). A bad option or input is one line, exit code 2.
"""
import sys

import _bootstrap  # noqa: E402,F401  pylint: disable=unused-import,wrong-import-position  (the project root on sys.path)

import model_utils  # noqa: E402,F401  (CPU runtime defaults before mindspore loads)
from model_utils.entry import run_entry  # noqa: E402


def _engine():
    from src.engine.deploy_sensitivity import run_deploy_sensitivity  # pylint: disable=import-outside-toplevel
    return run_deploy_sensitivity


def _outputs(config, resolve):
    return [("folder", "output_path", resolve(config.output_path))]


def main(argv=None):
    return run_entry(argv, "eval", "PSNR of the deployment model with one kind of rounding left out at a time.",
                     _engine, outputs=_outputs, needs=False)


if __name__ == "__main__":
    sys.exit(main())
