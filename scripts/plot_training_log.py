"""Plot a training log CSV (written by train.py) as loss and validation-PSNR curves.

    python scripts/plot_training_log.py --log outputs/train/abpn_M4C28_x2_train_log.csv --out curve.png
"""
import argparse
import csv
import os

import matplotlib

import _bootstrap  # noqa: E402,F401  pylint: disable=unused-import,wrong-import-position  (the project root on sys.path)
from src.utils.atomic import atomic_target  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--title", default="")
    args = parser.parse_args(argv)
    with open(args.log, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise SystemExit(f"error: {args.log} has no rows yet")
    steps = [int(r["step"]) for r in rows]
    psnr_keys = [k for k in rows[0] if k.startswith("psnr_")]
    fig, (ax_loss, ax_psnr) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(steps, [float(r["loss"]) for r in rows], marker=".")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("L1 loss (mean over the interval)")
    for key in psnr_keys:
        ax_psnr.plot(steps, [float(r[key]) for r in rows], marker=".", label=key[len("psnr_"):])
    ax_psnr.set_xlabel("step")
    ax_psnr.set_ylabel("validation PSNR (dB, Y)")
    ax_psnr.legend()
    for ax in (ax_loss, ax_psnr):
        ax.grid(alpha=0.3)
    fig.suptitle(args.title or os.path.basename(args.log))
    fig.tight_layout()
    with atomic_target(args.out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
