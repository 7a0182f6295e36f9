"""The own flags of the scripts built on eval.py (``scripts/sr_crops.py``, ``scripts/mixed_precision.py``):
declared once here, with their help, for the script (which reads them before MindSpore loads: this module
imports only argparse) and for the engine that interprets them (:mod:`src.engine.crop_figure`,
:mod:`src.engine.mixed_precision`). Every other argument is an eval.py option, read by the configuration."""
import argparse
import re
import sys

#: scripts/sr_crops.py: flag -> help
CROP_FLAGS = {
    "methods": "--quant_method values calibrated now from --pre_trained, as eval.py does (default "
               "dbdc,dbdc_pac,dbdc_recon; none when --quant_ckpts is given)",
    "quant_ckpts": "calibrated checkpoints, shown after the methods, as stored",
    "labels": "one label per quantized column (methods, then checkpoints)",
    "images": "<set>/<name>,... under <data_path>/benchmark (or DIV2K)",
    "box": "x,y,w,h in HR pixels: one for all images or one per image (';'); default: picked",
    "crop_size": "side of a picked crop in HR pixels (default 48)",
    "zoom": "pixel repetition of the crops (default 3)",
    "select": "how a crop is picked without --box: spread (default) or detail",
    "figure": "the PNG (default <output_path>/crops_<model>_<variant>_x<scale>_w<b>a<b>.png)",
    "save_quant_dir": "folder receiving each calibrated model",
}

#: scripts/mixed_precision.py: flag -> help
MIXED_PRECISION_FLAGS = {
    "budgets": "comma-separated budgets (default 0,0.1,0.25,0.5,1)",
    "budget_kind": "gap | high | absolute (default gap)",
    "budget_metric": "size | bops (default size)",
    "high_bits": "W,A bit widths a lifted layer gets (default 8,8)",
    "sensitivity": "lift | drop (default lift)",
    "sensitivity_datasets": "sets the sensitivity is measured on (default: --eval_datasets)",
    "input_size": "LR H,W for BOPs (default 360,640)",
}


def describe(flags):
    """One line listing ``flags`` for the script's ``--help`` description."""
    return "flags of this script: " + "; ".join(f"--{name}: {text}" for name, text in flags.items())


class _OneLineParser(argparse.ArgumentParser):
    """argparse whose error is the project's one line (``error: --flag needs a value``, exit code 2), as the
    configuration's parser prints it, instead of the usage block."""

    def error(self, message):
        missing = re.match(r"argument (--\w+): expected one argument", str(message))
        print(f"error: {missing.group(1)} needs a value" if missing else f"error: {message}", file=sys.stderr)
        sys.exit(2)


def split_flags(argv, flags, prog):
    """``({flag: text} of the ``flags`` given, the other arguments)`` of ``argv``, parsed with argparse (``--flag
    value`` or ``--flag=value``; no abbreviations, so eval.py's options pass through whole). A flag without its
    value is one line, ``error: --flag needs a value``, exit code 2. A value starting with one dash
    (``--labels -a,b``) is the flag's value; one starting with two is the next option."""
    parser = _OneLineParser(prog=prog, add_help=False, allow_abbrev=False)
    for name, text in flags.items():
        parser.add_argument(f"--{name}", default=None, help=text)
    args, joined = list(argv), []
    while args:
        arg = args.pop(0)
        if arg[2:] in flags and arg.startswith("--") and args and args[0].startswith("-") \
                and not args[0].startswith("--"):
            arg = f"{arg}={args.pop(0)}"  # argparse would take '-a,b' for an option
        joined.append(arg)
    known, rest = parser.parse_known_args(joined)
    return {name: value for name, value in vars(known).items() if value is not None}, rest
