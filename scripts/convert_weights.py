"""Convert published SR weights to a MindSpore checkpoint: PyTorch .pth, float .tflite, Keras SavedModel.

    python scripts/convert_weights.py --src ABPN_M4C28_x3.pth --dst abpn_x3.ckpt --model abpn --variant M4C28 --scale 3
    python scripts/convert_weights.py --src ../shared/weights/mlperf_edsr_x2/edsr_f32b5_fp32.tflite --dst edsr_f32b5_x2.ckpt
    python scripts/convert_weights.py --src ../shared/weights/abpn_authors_tf_x3/saved_model --dst abpn_tf_x3.ckpt

- ``.pth``: read without torch and without executing pickled code (src/weights/torch_pickle.py);
  ``--model``, ``--variant``, ``--scale`` name the network.
- ``.tflite`` (float32) or a SavedModel folder (src/weights/tf_import.py): the network is recognised from
  its conv chain (``--model/--variant/--scale`` are checked against it when given); pixels in 0..255
  are proven on a test image (or ``--pixel_range``) and folded into the biases; the converted network
  must give the source's output within 1e-4 of the 0..1 range on two test images, and the line
  printed says the difference measured.

Bad input: one ``error:`` line, exit code 2, nothing written.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import src  # noqa: E402,F401  (sets CPU runtime defaults before mindspore loads)
from src.errors import USER_ERRORS, UserError, error_line, is_user_error  # noqa: E402
from src.utils.atomic import refuse_same_file  # noqa: E402
from src.weights.checkpoint import CheckpointError, model_meta, save_checkpoint  # noqa: E402
from src.weights.convert import convert_source  # noqa: E402
from src.weights.torch_pickle import KEY_CHOICES  # noqa: E402


def _parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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


def main(argv=None):
    args = _parser().parse_args(argv)
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
        if not is_user_error(exc):
            raise
        if isinstance(exc, OSError) and not isinstance(exc, UserError):  # permissions, full disk, ...
            print(f"error: {action}: {error_line(exc)}", file=sys.stderr)
        else:
            print(f"error: {error_line(exc)}", file=sys.stderr)
        return 2
    for note in notes:
        print(note)
    print(f"wrote {args.dst}: {len(params)} tensors for {net.spec.model}-{net.variant} x{net.scale}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
