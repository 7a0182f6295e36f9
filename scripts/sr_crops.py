"""Zoomed crops side by side (HR, bicubic, float, each quantized model) with each crop's PSNR, as one PNG.

    python scripts/sr_crops.py --model abpn --scale 3 --pre_trained abpn_x3.ckpt --data_path ../shared/data \
        --calib_path ../shared/data/train --w_bit 4 --a_bit 4 --methods dbdc,dbdc_pac \
        [--images Set14/comic,DIV2K_valid_crop256/0803] [--box x,y,w,h[;x,y,w,h...]] \
        [--select spread|detail] [--crop_size 48] [--zoom 3] [--figure docs/crops.png] \
        [--save_quant_dir ckpts/] [--quant_ckpts a.ckpt,b.ckpt] [--labels DBDC,DBDC+PaC,...]

Flags of this script (every other flag is an eval.py flag; the bits and calibration options apply
to every method):

  --methods         --quant_method values calibrated now from --pre_trained, as eval.py does
                    (default dbdc,dbdc_pac,dbdc_recon; none when --quant_ckpts is given)
  --quant_ckpts     calibrated checkpoints (e.g. from --save_quant_dir or eval.py --save_quant_ckpt),
                    shown after the methods, as stored
  --labels          one label per quantized column (methods, then checkpoints)
  --images          <set>/<name>,... under <data_path>/benchmark (or DIV2K)
                    (default Set14/comic,Set14/zebra,DIV2K_valid_crop256/0803,DIV2K_valid_crop256/0846)
  --box             x,y,w,h in HR pixels: one for all images or one per image (';'); default: picked
  --select          how a crop is picked without --box: spread (default; where the outputs differ
                    most) or detail (most HR gradient energy)
  --crop_size       side of a picked crop in HR pixels (default 48); --zoom: pixel repetition (default 3)
  --figure          the PNG (default <output_path>/crops_<model>_<variant>_x<scale>_w<b>a<b>.png);
                    a .json report with every crop's box and PSNR is written beside it
  --save_quant_dir  folder receiving each calibrated model (<model>_<variant>_x<s>_w<b>a<b>_<method>.ckpt)

The logic is :mod:`src.engine.crop_figure`. A bad option or input is one line, exit code 2.
"""
import sys

import _bootstrap  # noqa: F401  pylint: disable=unused-import  (the project root on sys.path)
from model_utils.entry import run_entry
from src.engine.script_flags import CROP_FLAGS, describe, split_flags


def main(argv=None):
    raw, rest = split_flags(sys.argv[1:] if argv is None else argv, CROP_FLAGS, "sr_crops.py")

    def engine():
        from model_utils.validate import RULES  # pylint: disable=import-outside-toplevel
        from src.engine.crop_figure import parse_crop_options, run_crop_figure  # pylint: disable=import-outside-toplevel
        known = [m for m in RULES["quant_method"].choices if m]
        return lambda config: run_crop_figure(config, parse_crop_options(raw, known))

    def outputs(config, resolve):
        return [("file", "figure", resolve(raw["figure"])) if raw.get("figure") else
                ("folder", "output_path", resolve(config.output_path)),
                ("folder", "save_quant_dir", resolve(raw.get("save_quant_dir") or ""))]

    return run_entry(rest, "eval", "Zoomed crops side by side (HR, bicubic, float, each quantized model) with each "
                     "crop's PSNR; " + describe(CROP_FLAGS) + " (see scripts/sr_crops.py).", engine, outputs=outputs,
                     needs=False)


if __name__ == "__main__":
    sys.exit(main())
