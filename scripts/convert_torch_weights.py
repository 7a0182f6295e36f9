"""Convert a published PyTorch SR state dict to a MindSpore checkpoint.

    python scripts/convert_torch_weights.py --src ABPN_M4C28_x3.pth --dst abpn_x3.ckpt \
        --model abpn --variant M4C28 --scale 3

Reads the .pth without torch, without executing pickled code and without trusting its sizes
(every tensor is checked against the bytes really in the file). DataParallel's ``module.`` prefix
is stripped; for BasicSR files ``--key`` picks ``params`` or ``params_ema`` (``auto``: params_ema,
saying so). Bad input: one ``error:`` line, exit code 2, nothing written.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import src  # noqa: E402,F401  (sets CPU runtime defaults before mindspore loads)
from src.errors import USER_ERRORS, error_line  # noqa: E402
from src.models import create_model  # noqa: E402
from src.utils.atomic import refuse_same_file  # noqa: E402
from src.weights.checkpoint import CheckpointError, model_meta, save_checkpoint  # noqa: E402
from src.weights.torch_import import convert_torch_state_dict  # noqa: E402
from src.weights.torch_pickle import KEY_CHOICES, load_torch_weights  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True, help="PyTorch .pth state dict")
    parser.add_argument("--dst", required=True, help="output MindSpore .ckpt (must not be --src)")
    parser.add_argument("--model", required=True, help="abpn | etds | ecbsr | edsr | abpn_et | ecbsr_et")
    parser.add_argument("--variant", default=None, help="e.g. M4C28, M4C32, M4C16, baseline, full")
    parser.add_argument("--scale", type=int, required=True)
    parser.add_argument("--key", default="auto", choices=KEY_CHOICES,
                        help="which state dict of a wrapped file to convert: BasicSR 'params' or 'params_ema' "
                             "(auto: params_ema when both exist, with a note), or 'state_dict'/'model'")
    args = parser.parse_args(argv)
    action = f"cannot read {args.src}"
    try:
        if not os.path.isfile(args.src):
            raise CheckpointError(f"--src file not found: {args.src}")
        if os.path.isdir(args.dst):
            raise ValueError(f"--dst {args.dst} is a folder; give a file name such as "
                             f"{os.path.join(args.dst, args.model + '.ckpt')}")
        refuse_same_file(args.src, args.dst, "--dst", "--src")
        net = create_model(args.model, args.variant, args.scale)
        weights = load_torch_weights(args.src, key=args.key)
        params = convert_torch_state_dict(net, weights.state_dict)
        action = f"cannot write {args.dst}"
        save_checkpoint(params, args.dst, meta=model_meta(net))
    except OSError as exc:  # permissions, full disk, a path component that is a file
        print(f"error: {action}: {error_line(exc)}", file=sys.stderr)
        return 2
    except USER_ERRORS as exc:
        print(f"error: {error_line(exc)}", file=sys.stderr)
        return 2
    for note in weights.notes:
        print(note)
    print(f"wrote {args.dst}: {len(params)} tensors for {args.model}-{net.variant} x{args.scale}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
