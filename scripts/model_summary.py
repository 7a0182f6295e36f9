"""Parameters, MACs, additions and energy of every registered variant (deploy form).

    python scripts/model_summary.py --model sesr --variant M5 --scale 2 --input_size 360,640
    python scripts/model_summary.py --model all --scale 2        # every model and variant
    python scripts/model_summary.py --model sesr --linear_block_type collapsed_adder   # AdderSESR
"""
import argparse
import sys

import _bootstrap  # noqa: E402,F401  pylint: disable=unused-import,wrong-import-position  (the project root on sys.path)

import src  # noqa: E402,F401  (CPU runtime defaults before mindspore loads)
from src.models.complexity import count  # noqa: E402
from src.models.registry import create_model, list_models, list_variants  # noqa: E402


def _fmt(value, unit=""):
    for div, suffix, digits in ((1e9, "G", 3), (1e6, "M", 2), (1e3, "K", 2)):
        if abs(value) >= div:
            return f"{value / div:.{digits}f}{suffix}{unit}"
    return f"{value:.0f}{unit}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="all", help="a model name or 'all'")
    parser.add_argument("--variant", default="all", help="a variant or 'all'")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--input_size", default="360,640", help="LR H,W")
    parser.add_argument("--n_colors", type=int, default=0, help="0 = family default")
    parser.add_argument("--linear_block_type", default="collapsed", help="sesr: collapsed | collapsed_adder")
    args = parser.parse_args(argv)
    hw = tuple(int(v) for v in args.input_size.split(","))
    models = list_models() if args.model == "all" else [args.model]
    print(f"x{args.scale}, LR {hw[0]}x{hw[1]} -> {hw[0] * args.scale}x{hw[1] * args.scale}; energy per image")
    header = (f"{'model':<11}{'variant':<10}{'weights':>9}{'params':>9}{'MACs':>11}{'mults':>11}{'adds':>11}"
              f"{'fp32 mJ':>11}{'int8 mJ':>10}")
    print(header)
    for model in models:
        variants = list_variants(model) if args.variant == "all" else [args.variant]
        for variant in variants:
            try:
                net = create_model(model, variant, args.scale, n_colors=args.n_colors,
                                   linear_block_type=args.linear_block_type)
            except ValueError as exc:  # e.g. EDSR (its mean shift is RGB) with --n_colors 1
                if args.model != "all":
                    print(f"error: {exc}", file=sys.stderr)
                    return 2
                print(f"{model:<11}{variant:<10}  skipped: {exc}")
                continue
            c = count(net, hw)
            label = "addersesr" if c.adder_macs else model
            print(f"{label:<11}{variant:<10}{_fmt(c.weights):>9}{_fmt(c.params):>9}"
                  f"{_fmt(c.conv_macs + c.adder_macs):>11}{_fmt(c.multiplications):>11}{_fmt(c.additions):>11}"
                  f"{c.energy_mj('fp32'):>11.2f}{c.energy_mj('int8'):>10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
