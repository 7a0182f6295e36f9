"""Convert a published PyTorch SR state dict to a MindSpore checkpoint.

    python scripts/convert_torch_weights.py --src ABPN_M4C28_x3.pth --dst abpn_x3.ckpt \
        --model abpn --variant M4C28 --scale 3

Reads the .pth without torch and without executing pickled code.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import src  # noqa: E402,F401  (sets CPU runtime defaults before mindspore loads)
from src.models import create_model  # noqa: E402
from src.weights.checkpoint import CheckpointError, model_meta, save_checkpoint  # noqa: E402
from src.weights.convert import convert_torch_state_dict  # noqa: E402
from src.weights.torch_pickle import UnsafeCheckpointError, load_torch_state_dict  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True, help="PyTorch .pth state dict")
    parser.add_argument("--dst", required=True, help="output MindSpore .ckpt")
    parser.add_argument("--model", required=True, help="abpn | etds | ecbsr | edsr")
    parser.add_argument("--variant", default=None, help="e.g. M4C28, M4C32, M4C16, baseline, full")
    parser.add_argument("--scale", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        if not os.path.isfile(args.src):
            raise CheckpointError(f"--src file not found: {args.src}")
        net = create_model(args.model, args.variant, args.scale)
        params = convert_torch_state_dict(net, load_torch_state_dict(args.src))
        save_checkpoint(params, args.dst, meta=model_meta(net))
    except (CheckpointError, UnsafeCheckpointError, ValueError, OSError) as exc:  # OSError: full disk, read-only, ...
        from src.errors import error_line  # pylint: disable=import-outside-toplevel
        print(f"error: {error_line(exc)}", file=sys.stderr)
        return 2
    print(f"wrote {args.dst}: {len(params)} tensors for {args.model}-{net.variant} x{args.scale}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
