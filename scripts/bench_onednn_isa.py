"""Time one 28->28 3x3 convolution on a 360x640 map under different oneDNN ISA caps.

    python scripts/bench_onednn_isa.py                 # project default (AVX2) vs no cap (ALL)

Each setting runs in a fresh process (oneDNN reads ONEDNN_MAX_CPU_ISA once, at
load). Prints the median of 5 runs after 2 warm-ups, and the kernel oneDNN chose.
"""
import argparse
import os
import re
import subprocess
import sys

from _bootstrap import ROOT

CHILD = r"""
import sys, time
sys.path.insert(0, {root!r})
import src
import numpy as np
import mindspore as ms
from mindspore import Tensor, nn
ms.set_context(mode=ms.GRAPH_MODE)
ms.set_device("CPU")
conv = nn.Conv2d(28, 28, 3, pad_mode="pad", padding=1, has_bias=True)
x = Tensor(np.random.default_rng(0).random((1, 28, 360, 640)).astype(np.float32))
times = []
for i in range(7):
    t = time.perf_counter()
    conv(x).asnumpy()
    times.append(time.perf_counter() - t)
print("MEDIAN", sorted(times[2:])[len(times[2:]) // 2])
"""


def run(isa):
    env = dict(os.environ, ONEDNN_VERBOSE="1", ONEDNN_MAX_CPU_ISA=isa)
    proc = subprocess.run([sys.executable, "-c", CHILD.format(root=ROOT)], capture_output=True, text=True, env=env)
    median = re.search(r"MEDIAN ([0-9.e-]+)", proc.stdout)
    kernels = re.findall(r"convolution,([^,]+),forward", proc.stdout)
    return (float(median.group(1)) if median else float("nan")), (kernels[-1] if kernels else "?")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--isa", default="AVX2,ALL", help="comma-separated ONEDNN_MAX_CPU_ISA values")
    args = parser.parse_args()
    print(f"{'ONEDNN_MAX_CPU_ISA':<20}{'median (s)':>12}  kernel")
    for isa in args.isa.split(","):
        seconds, kernel = run(isa)
        print(f"{isa:<20}{seconds:>12.4f}  {kernel}")


if __name__ == "__main__":
    main()
