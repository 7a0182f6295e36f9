"""Mixed precision under a size or BOPs budget: per-layer bit tables chosen by measured sensitivity.

    python scripts/mixed_precision.py --model abpn --variant M4C28 --scale 3 --pre_trained abpn_x3.ckpt \
        --data_path ../shared/data --eval_datasets Set5,Set14 --calib_path ../shared/data/train \
        --w_bit 4 --a_bit 4 [--high_bits 8,8] [--quant_method dbdc_pac] \
        [--budgets 0,0.1,0.25,0.5,1] [--budget_kind gap|high|absolute] [--budget_metric size|bops] \
        [--sensitivity lift|drop] [--sensitivity_datasets DIV2K_valid_crop256] [--input_size 360,640] \
        [--output_path ./outputs]

``--w_bit/--a_bit`` are the low bits every layer starts at, ``--high_bits`` what a lifted layer
gets. Measures each layer's sensitivity once, then for every budget chooses the bit table
greedily, calibrates it with ``--quant_method`` (default dbdc_pac; any eval.py method) and
evaluates it on ``--eval_datasets``; writes
``<output_path>/mixed_precision_<model>_<variant>_x<scale>_w<b>a<b>-w<b>a<b>_<method>_<metric>.{md,json,png}``
(:mod:`src.engine.mixed_precision`, where the options are described). Every other flag is an
eval.py flag. A bad option or input is one line, exit code 2.
"""
import sys

import _bootstrap  # noqa: F401  pylint: disable=unused-import  (the project root on sys.path)
from model_utils.entry import run_entry
from src.engine.script_flags import MIXED_PRECISION_FLAGS, describe, split_flags

DESCRIPTION = "Mixed precision under a size or BOPs budget (per-layer bit tables); " + describe(MIXED_PRECISION_FLAGS)


def main(argv=None):
    raw, argv = split_flags(sys.argv[1:] if argv is None else argv, MIXED_PRECISION_FLAGS, "mixed_precision.py")

    def engine():
        from src.engine.mixed_precision import parse_options, run_mixed_precision  # pylint: disable=import-outside-toplevel
        return lambda config: run_mixed_precision(config, parse_options(raw))
    return run_entry(argv, "eval", DESCRIPTION, engine,
                     outputs=lambda config, resolve: [("folder", "output_path", resolve(config.output_path))], needs=False)


if __name__ == "__main__":
    sys.exit(main())
