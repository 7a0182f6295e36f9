"""Set5 / Set14 PSNR of int8 TFLite files against the MindSpore fake-quant model, and LiteRT latency.

Usage (one calibrated checkpoint per call):
    python scripts/tflite_fidelity.py --model abpn --scale 3 --pre_trained /work/ck/abpn_x3_w8a8.ckpt \
        --data_path ../shared/data [--sets Set5,Set14] [--latency_runs 10] [--result_file r.json]

The TFLite file has a fixed input shape (``--tile``, default 64), so images are run by the
project's runner (:func:`src.runtime.runners.open_exported`, as ``eval.py`` runs a file) in
windows of that size, each keeping only the pixels that have the model's receptive radius of
real context (or the image border): for a fixed-range int8 graph this is the same output as one
run over the whole image. The fake-quant model
runs untiled. Latency: median of ``--latency_runs`` LiteRT invocations (2 threads,
XNNPACK) after 3 warm-ups at 1 x 360 x 640, float32 file vs int8 file.
"""
import argparse
import json
import os
import time

import numpy as np

import _bootstrap  # noqa: F401  pylint: disable=unused-import,wrong-import-order  (the project root on sys.path)
from src.engine.inference import SRPredictor
from src.export.tflite.tflite_export import TFLiteOptions, export_tflite
from src.runtime import tflite_check
from src.runtime.metadata import export_metadata
from src.runtime.runners import open_exported
from src.weights.loader import load_float_and_quantized


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
    # ranges as export.py observes them: on the built-in sample photo at 1 x C x 360 x 640 (conv outputs);
    # the other tensor ranges on that photo resized to the tile
    from src.export.exporter import example_inputs  # pylint: disable=import-outside-toplevel
    from src.export.onnx.onnx_qdq import observe_output_ranges  # pylint: disable=import-outside-toplevel
    photo = example_inputs((1, n, 360, 640))[0]
    ranges = observe_output_ranges(q, [photo])
    tile_example = example_inputs((1, n, args.tile, args.tile))[0]
    result = {"model": args.model, "scale": args.scale, "checkpoint": args.pre_trained, "tile": args.tile}
    report = export_tflite(fp, q, tile_example, stem + "_tile_int8.tflite",
                           TFLiteOptions("int8", output_ranges=ranges, metadata=export_metadata(q, "int8")),
                           log=lambda *_: None)
    result["xnnpack_tile"] = report["xnnpack"]
    config = SimpleNamespace(scale=args.scale, shave=-1, gt_mod=12, metric_channel="y", cache_dir="/tmp/tflite_fidelity/cache",
                             data_dir="", output_path=args.out_dir)
    runner = open_exported(stem + "_tile_int8.tflite")
    for name in [s for s in args.sets.split(",") if s]:
        eval_set = resolve_eval_set(args.data_path, name, args.scale)
        fq = evaluate_set(SRPredictor(q, args.scale, tile_size=-1), eval_set, config)["psnr"]
        tfl = evaluate_set(SRPredictor(runner, args.scale, tile_size=-1), eval_set, config)["psnr"]
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
