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
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import model_utils  # noqa: E402,F401  (CPU runtime defaults before mindspore loads)
from model_utils.entry import run_entry  # noqa: E402
from src.errors import UserError  # noqa: E402

FLAGS = ("methods", "quant_ckpts", "labels", "images", "box", "crop_size", "zoom", "select", "figure",
         "save_quant_dir")  # the same as src.engine.crop_figure.FLAGS (a test checks), read before mindspore loads


def pop_flags(argv):
    """``({flag: text or None}, the other arguments)``; raises ``ValueError`` for a flag without its value."""
    raw, rest, args = dict.fromkeys(FLAGS), [], list(argv)
    while args:
        arg = args.pop(0)
        name, eq, value = arg[2:].partition("=")
        if not arg.startswith("--") or name not in FLAGS:
            rest.append(arg)
            continue
        if not eq:
            if not args or (args[0].startswith("--") and len(args[0]) > 2):
                raise UserError(f"--{name} needs a value")
            value = args.pop(0)
        raw[name] = value
    return raw, rest


def main(argv=None):
    try:
        raw, rest = pop_flags(sys.argv[1:] if argv is None else argv)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def engine():
        from model_utils.validate import RULES  # pylint: disable=import-outside-toplevel
        from src.engine.crop_figure import parse_crop_options, run_crop_figure  # pylint: disable=import-outside-toplevel
        known = [m for m in RULES["quant_method"].choices if m]
        return lambda config: run_crop_figure(config, parse_crop_options(raw, known))

    def outputs(config, resolve):
        return [("file", "figure", resolve(raw["figure"])) if raw["figure"] else
                ("folder", "output_path", resolve(config.output_path)),
                ("folder", "save_quant_dir", resolve(raw["save_quant_dir"] or ""))]

    return run_entry(rest, "eval", "Zoomed crops side by side (HR, bicubic, float, each quantized model) with each "
                     "crop's PSNR; flags of this script: " + ", ".join(f"--{f}" for f in FLAGS) +
                     " (see scripts/sr_crops.py).", engine, outputs=outputs, needs=False)


if __name__ == "__main__":
    sys.exit(main())
