"""The weight converter's command line (``scripts/convert_weights.py`` and ``scripts/convert_torch_weights.py``
run it): PyTorch ``.pth``, float ``.tflite`` or a Keras SavedModel folder -> a MindSpore checkpoint with its
model metadata. A bad input is one ``error:`` line, exit code 2, nothing written; the conversion itself is
:func:`src.weights.convert.convert_source`."""
import argparse
import os

from src.errors import USER_ERRORS, UserError, print_user_error
from src.utils.atomic import refuse_same_file
from src.weights.checkpoint import CheckpointError, model_meta, save_checkpoint
from src.weights.convert import convert_source
from src.weights.torch_pickle import KEY_CHOICES


def _parser(description=__doc__):
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True, help="PyTorch .pth state dict, float .tflite file or SavedModel folder")
    parser.add_argument("--dst", required=True, help="output MindSpore .ckpt (must not be --src)")
    parser.add_argument("--model", default=None, help="abpn | etds | ecbsr | edsr | abpn_et | ecbsr_et "
                                                      "(.pth: required; TensorFlow sources: checked)")
    parser.add_argument("--variant", default=None, help="e.g. M4C28, M4C32, M4C16, baseline, full, f32b5")
    parser.add_argument("--scale", type=int, default=None, help=".pth: required; TensorFlow sources: checked")
    parser.add_argument("--key", default="auto", choices=KEY_CHOICES,
                        help=".pth only: which state dict of a wrapped file to convert: BasicSR 'params' or "
                             "'params_ema' (auto: params_ema when both exist, with a note), or 'state_dict'/'model'")
    parser.add_argument("--pixel_range", default="auto", choices=("auto", "1", "255"),
                        help="TensorFlow sources: the pixel values the source takes (auto: proven on a test image)")
    return parser


def main(argv=None, description=__doc__):
    """Run the converter on ``argv`` (default: the command line); returns the exit code (0, or 2 with one
    ``error:`` line on standard error)."""
    args = _parser(description).parse_args(argv)
    action = f"cannot read {args.src}"
    try:
        if not os.path.exists(args.src):
            raise CheckpointError(f"--src file not found: {args.src}")
        if os.path.isdir(args.dst):
            raise UserError(f"--dst {args.dst} is a folder; give a file name such as "
                             f"{os.path.join(args.dst, (args.model or 'model') + '.ckpt')}")
        refuse_same_file(args.src, args.dst, "--dst", "--src")
        net, params, notes = convert_source(args.src, args.model, args.variant, args.scale, args.key, args.pixel_range)
        action = f"cannot write {args.dst}"
        save_checkpoint(params, args.dst, meta=model_meta(net))
    except USER_ERRORS as exc:
        return print_user_error(exc, action)  # an OSError (permissions, full disk) says what it was doing
    for note in notes:
        print(note)
    print(f"wrote {args.dst}: {len(params)} tensors for {net.spec.model}-{net.variant} x{net.scale}")
    return 0
