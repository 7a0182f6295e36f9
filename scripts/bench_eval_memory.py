"""Peak memory and time of whole-image evaluation, tiled vs untiled, side by side.

    python scripts/bench_eval_memory.py --model edsr --variant full --scale 2 --hr_size 1356,2040

Each configuration runs in its own process (peak RSS = that process's maxrss).
The input is a real photo (scikit-image's astronaut) resized to a DIV2K-sized HR
image; weights are random (memory and time do not depend on them).
"""
import argparse
import json
import os
import subprocess
import sys



def child(args):
    import _bootstrap  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import  (the project root on sys.path)
    import resource  # pylint: disable=import-outside-toplevel
    import time  # pylint: disable=import-outside-toplevel
    import src  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    import cv2  # pylint: disable=import-outside-toplevel
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    from skimage import data  # pylint: disable=import-outside-toplevel
    from src.data.imresize import imresize  # pylint: disable=import-outside-toplevel
    from src.engine.inference import SRPredictor  # pylint: disable=import-outside-toplevel
    from src.models import create_model  # pylint: disable=import-outside-toplevel
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")
    h, w = args.hr_size
    hr = cv2.resize(data.astronaut(), (w, h), interpolation=cv2.INTER_CUBIC)
    lr = imresize(hr[: h // args.scale * args.scale, : w // args.scale * args.scale], 1 / args.scale)
    net = create_model(args.model, args.variant, args.scale)
    predictor = SRPredictor(net, args.scale, tile_size=args.tile, max_tile_mem_gb=args.max_tile_mem_gb)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    start = time.time()
    sr = predictor.predict(lr)
    seconds = time.time() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    print(json.dumps({"tile": predictor.tile_size, "lr": list(lr.shape[:2]), "sr": list(sr.shape[:2]),
                      "peak_gb": round(peak, 2), "model_loaded_gb": round(before, 2), "seconds": round(seconds, 1)}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="edsr")
    parser.add_argument("--variant", default="full")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--hr_size", default="1356,2040", help="H,W of the HR image")
    parser.add_argument("--max_tile_mem_gb", type=float, default=6.0)
    parser.add_argument("--modes", default="-1,0", help="tile sizes to compare: -1 untiled, 0 automatic, N fixed")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tile", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.hr_size = tuple(int(v) for v in str(args.hr_size).split(","))
    if args.child:
        child(args)
        return
    print(f"{args.model}-{args.variant} x{args.scale}, HR {args.hr_size[1]}x{args.hr_size[0]}")
    print(f"{'mode':<12}{'tile':>6}{'peak RSS (GiB)':>16}{'seconds':>10}")
    for mode in (int(m) for m in args.modes.split(",")):
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "--tile", str(mode), "--model", args.model,
               "--variant", args.variant, "--scale", str(args.scale), "--hr_size", ",".join(map(str, args.hr_size)),
               "--max_tile_mem_gb", str(args.max_tile_mem_gb)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        name = {-1: "untiled", 0: "auto-tiled"}.get(mode, f"tile {mode}")
        if proc.returncode != 0:
            print(f"{name:<12}{'-':>6}{'failed (exit ' + str(proc.returncode) + ')':>16}")
            continue
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{name:<12}{res['tile']:>6}{res['peak_gb']:>16.2f}{res['seconds']:>10.1f}")


if __name__ == "__main__":
    main()
