"""Set5 / Set14 PSNR of int8 TFLite files against the MindSpore fake-quant model, and LiteRT latency.

Usage (one calibrated checkpoint per call):
    python scripts/tflite_fidelity.py --model abpn --scale 3 --pre_trained /work/ck/abpn_x3_w8a8.ckpt \
        --data_path ../shared/data [--sets Set5,Set14] [--latency_runs 10] [--result_file r.json]

The TFLite file has a fixed input shape, so images are run as fixed-size LR tiles
(``--tile``, default 64) placed inside the image, each keeping only the pixels that have
the model's receptive radius of real context (or the image border): for a fixed-range
int8 graph this is the same output as one run over the whole image. The fake-quant model
runs untiled. Latency: median of ``--latency_runs`` LiteRT invocations (2 threads,
XNNPACK) after 3 warm-ups at 1 x 360 x 640, float32 file vs int8 file.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from src.engine.inference import SRPredictor  # noqa: E402  pylint: disable=wrong-import-position
from src.runtime import tflite_check  # noqa: E402  pylint: disable=wrong-import-position
from src.export.tflite.tflite_export import TFLiteOptions, export_tflite  # noqa: E402  pylint: disable=wrong-import-position
from src.weights.loader import load_float_and_quantized  # noqa: E402  pylint: disable=wrong-import-position
from src.errors import UserError  # noqa: E402


class TiledTFLite(SRPredictor):
    """SRPredictor whose forward pass runs a fixed-shape TFLite interpreter over inner tiles."""

    def __init__(self, net, scale, interp, tile):
        super().__init__(net, scale, tile_size=-1)
        self.interp, self.tile, self.radius = interp, tile, int(net.receptive_radius)

    def forward(self, x, tiled=True):
        del tiled  # always in tiles of the file's size
        _, _, h, w = x.shape
        t, r, s = self.tile, self.radius, self.scale
        if h < t or w < t:
            raise UserError(f"image {h}x{w} smaller than the {t}x{t} tile")
        out = np.empty((1, x.shape[1], h * s, w * s), np.float32)
        for y0 in _starts(h, t, r):
            for x0 in _starts(w, t, r):
                patch = tflite_check.run_nchw(self.interp, np.ascontiguousarray(x[:, :, y0:y0 + t, x0:x0 + t]))
                cy0, cy1 = (y0 + r if y0 else 0), (y0 + t - r if y0 + t < h else h)
                cx0, cx1 = (x0 + r if x0 else 0), (x0 + t - r if x0 + t < w else w)
                out[:, :, cy0 * s:cy1 * s, cx0 * s:cx1 * s] = patch[:, :, (cy0 - y0) * s:(cy1 - y0) * s,
                                                                   (cx0 - x0) * s:(cx1 - x0) * s]
        return out


def _starts(size, tile, radius):
    step = tile - 2 * radius
    starts = list(range(0, size - tile + 1, step))
    if starts[-1] != size - tile:
        starts.append(size - tile)
    return starts


def latency(path, runs, threads=2):
    interp = tflite_check.interpreter(path, threads)
    detail = interp.get_input_details()[0]
    x = np.random.default_rng(0).random(detail["shape"]).astype(np.float32)
    if detail["dtype"] == np.uint8:
        x = (x * 255).astype(np.uint8)
    interp.set_tensor(detail["index"], x)
    for _ in range(3):
        interp.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interp.invoke()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--variant", default="")
    parser.add_argument("--scale", type=int, required=True)
    parser.add_argument("--pre_trained", required=True)
    parser.add_argument("--data_path", default="../shared/data")
    parser.add_argument("--sets", default="Set5,Set14")
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--latency_runs", type=int, default=0)
    parser.add_argument("--out_dir", default="/tmp/tflite_fidelity")
    parser.add_argument("--result_file", default="")
    args = parser.parse_args()
    from types import SimpleNamespace  # pylint: disable=import-outside-toplevel
    from src.data.eval_sets import resolve_eval_set  # pylint: disable=import-outside-toplevel
    from src.engine.evaluator import evaluate_set  # pylint: disable=import-outside-toplevel
    from src.models.registry import default_variant  # pylint: disable=import-outside-toplevel
    variant = args.variant or default_variant(args.model)
    fp, q, _ = load_float_and_quantized(args.model, variant, args.scale, args.pre_trained)
    if q is None:
        raise SystemExit("error: --pre_trained must be a calibrated checkpoint")
    n = fp.n_colors
    os.makedirs(args.out_dir, exist_ok=True)
    stem = os.path.join(args.out_dir, f"{args.model}_x{args.scale}")
    rng = np.random.default_rng(0)
    # ranges as export.py observes them: on the built-in sample photo at 1 x C x 360 x 640 (conv outputs);
    # the other tensor ranges on that photo resized to the tile
    from src.export.exporter import example_inputs  # pylint: disable=import-outside-toplevel
    from src.export.onnx.onnx_qdq import observe_output_ranges  # pylint: disable=import-outside-toplevel
    photo = example_inputs((1, n, 360, 640))[0]
    ranges = observe_output_ranges(q, [photo])
    tile_example = example_inputs((1, n, args.tile, args.tile))[0]
    result = {"model": args.model, "scale": args.scale, "checkpoint": args.pre_trained, "tile": args.tile}
    report = export_tflite(fp, q, tile_example, stem + "_tile_int8.tflite",
                           TFLiteOptions("int8", output_ranges=ranges), log=lambda *_: None)
    result["xnnpack_tile"] = report["xnnpack"]
    config = SimpleNamespace(scale=args.scale, shave=-1, gt_mod=12, metric_channel="y", cache_dir="/tmp/tflite_fidelity/cache",
                             data_dir="", output_path=args.out_dir)
    interp = tflite_check.interpreter(stem + "_tile_int8.tflite")
    for name in [s for s in args.sets.split(",") if s]:
        eval_set = resolve_eval_set(args.data_path, name, args.scale)
        fq = evaluate_set(SRPredictor(q, args.scale, tile_size=-1), eval_set, config)["psnr"]
        tfl = evaluate_set(TiledTFLite(q, args.scale, interp, args.tile), eval_set, config)["psnr"]
        result[name] = {"fake_quant": round(fq, 4), "tflite_int8": round(tfl, 4), "delta": round(tfl - fq, 4)}
        print(name, result[name], flush=True)
    if args.latency_runs:
        x = photo
        for quant in ("none", "int8"):
            path = f"{stem}_360x640_{quant}.tflite"
            rep = export_tflite(fp, q, x, path, TFLiteOptions(quant), log=lambda *_: None)
            result[f"latency_ms_{quant}"] = round(latency(path, args.latency_runs), 2)
            result[f"xnnpack_{quant}"] = rep["xnnpack"]
            result[f"max_abs_diff_{quant}"] = rep["max_abs_diff"]
        result["speedup"] = round(result["latency_ms_none"] / result["latency_ms_int8"], 2)
    print(json.dumps(result), flush=True)
    if args.result_file:
        with open(args.result_file, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
