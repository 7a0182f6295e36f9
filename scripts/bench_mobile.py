"""Mobile deployment benchmark: latency and PSNR of the exact files export.py writes.

    python scripts/bench_mobile.py \
        --models abpn:M4C28:3:abpn_x3.ckpt:abpn_x3_w8a8.ckpt,sesr:M5:2:pretrained/sesr_M5_x2.ckpt:sesr_x2_w8a8.ckpt \
        --data_path ../shared/data --runs 20 --rounds 3

For each ``model:variant:scale:float checkpoint:calibrated checkpoint`` it runs ``export.py`` (as a user
would) to write six files at the Mobile-AI input size (``--input_shape``, default 1 x C x 360 x 640):
ONNX float and int8 for the ``desktop`` and ``mobile`` targets, and TFLite float32 and int8 (mobile).
Then, in this process:

- latency (Mobile-AI protocol): median of ``--runs`` runs after ``--warmup`` runs, ``--threads`` threads
  (2), onnxruntime's CPU provider for the ONNX files and LiteRT's interpreter (XNNPACK delegate) for the
  TFLite files; the median over ``--rounds`` rounds in which every file runs once in turn (this machine's
  timings drift by 10-20% over minutes, so alternating keeps the ratios fair);
- partitions: NNAPI / CoreML (``onnxruntime.tools.check_onnx_model_mobile_usability``) for the mobile ONNX
  files and XNNPACK (LiteRT's delegate log) for the TFLite files;
- with ``--data_path``: Set5 / Set14 PSNR (Y) through ``eval.py`` for the float checkpoint, the calibrated
  checkpoint (MindSpore fake-quant), the int8 ONNX (mobile) and the int8 TFLite file.

Markdown tables go to stdout and a JSON report to ``--out_dir``/bench_mobile.json.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import _bootstrap  # noqa: E402,F401  pylint: disable=unused-import,wrong-import-position  (the project root on sys.path)

import src  # noqa: E402,F401  (CPU runtime defaults before mindspore loads)
from src.utils.timing import median_ms  # noqa: E402

# (label, export.py options, which checkpoint) of the six files per model
FILES = (("ORT float desktop", ["--file_format", "ONNX", "--target", "desktop"], "float"),
         ("ORT int8 desktop", ["--file_format", "ONNX", "--target", "desktop", "--quant", "int8"], "quant"),
         ("ORT float mobile", ["--file_format", "ONNX", "--target", "mobile"], "float"),
         ("ORT int8 mobile", ["--file_format", "ONNX", "--target", "mobile", "--quant", "int8"], "quant"),
         ("LiteRT float32", ["--file_format", "TFLITE"], "float"),
         ("LiteRT int8", ["--file_format", "TFLITE", "--quant", "int8"], "quant"))


def _run(args, what):
    """Run an entry script of this project; its stdout, or SystemExit with its last lines."""
    proc = subprocess.run([sys.executable] + args, cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
        raise SystemExit(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout




def _timer(path, threads):
    """A zero-argument callable running the file once on a random input of its own shape."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(0)
    if path.endswith(".tflite"):
        from ai_edge_litert.interpreter import Interpreter  # pylint: disable=import-outside-toplevel
        interpreter = Interpreter(model_path=path, num_threads=threads)
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
        x = rng.random(detail["shape"]).astype(np.float32)
        if detail["dtype"] != np.float32:
            scale, zero = detail["quantization"]
            info = np.iinfo(detail["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(detail["dtype"])
        index = detail["index"]

        def run():
            interpreter.set_tensor(index, x)
            interpreter.invoke()
        return run
    from src.runtime.sessions import ort_session  # pylint: disable=import-outside-toplevel
    session = ort_session(path, threads)
    node = session.get_inputs()[0]
    shape = [d if isinstance(d, int) else None for d in node.shape]
    x = rng.random(shape_of(shape)).astype(np.float32)  # made once, as for LiteRT: not timed
    return lambda: session.run(None, {node.name: x})


def shape_of(shape, default=(1, 3, 360, 640)):
    """Concrete NCHW shape: symbolic dimensions take the Mobile-AI size."""
    return tuple(d if d is not None else default[i] for i, d in enumerate(shape))


def _partitions(path):
    """{delegate: report} of a mobile file: XNNPACK for TFLite, NNAPI / CoreML for ONNX."""
    if path.endswith(".tflite"):
        from src.runtime.tflite_check import xnnpack_partitions  # pylint: disable=import-outside-toplevel
        return {"XNNPACK": xnnpack_partitions(path)}
    from src.export.onnx.mobile_check import partition_report  # pylint: disable=import-outside-toplevel
    return partition_report(path)


def _psnr(checkpoint_or_file, spec, args, out_dir, tag):
    model, variant, scale = spec[:3]
    result = os.path.join(out_dir, f"eval_{model}_{variant}_x{scale}_{tag}.json")
    _run(["eval.py", "--model", model, "--variant", variant, "--scale", scale, "--pre_trained", checkpoint_or_file,
          "--data_path", args.data_path, "--eval_datasets", "Set5,Set14", "--result_file", result],
         f"eval.py on {checkpoint_or_file}")
    with open(result, encoding="utf-8") as handle:
        report = json.load(handle)["results"]
    return {name: report[name]["psnr"] for name in ("Set5", "Set14")}


def bench_model(spec_text, args):
    spec = spec_text.split(":")
    if len(spec) != 5:
        raise SystemExit(f"--models entries are model:variant:scale:float_ckpt:calibrated_ckpt, not '{spec_text}'")
    model, variant, scale, float_ckpt, quant_ckpt = spec
    n_colors = 1 if model == "sesr" else 3
    shape = f"1,{n_colors},{args.input[0]},{args.input[1]}"
    source = os.path.splitext(os.path.basename(float_ckpt))[0]  # tells apart two checkpoints of one model
    out_dir = os.path.join(args.out_dir, f"{model}_{variant}_x{scale}_{source}")
    os.makedirs(out_dir, exist_ok=True)
    files = {}
    for label, options, which in FILES:
        stem = label.lower().replace(" ", "_")
        path = os.path.join(out_dir, f"{model}_{variant}_x{scale}_{stem}")
        log = _run(["export.py", "--model", model, "--variant", variant, "--scale", scale,
                    "--pre_trained", float_ckpt if which == "float" else quant_ckpt, "--input_shape", shape,
                    "--export_file", path] + options, f"export.py {label}")
        written = [line.split()[1] for line in log.splitlines() if line.startswith("wrote ")]
        files[label] = written[-1] if written else path
        print(f"  {label}: {files[label]}", flush=True)
    timers = {label: _timer(path, args.threads) for label, path in files.items()}
    times = {label: [] for label in files}
    for _ in range(args.rounds):
        for label, run in timers.items():
            times[label].append(median_ms(run, args.warmup, args.runs))
    row = {"model": f"{model}-{variant} x{scale} ({source})", "float_ckpt": float_ckpt, "quant_ckpt": quant_ckpt,
           "latency_ms": {label: statistics.median(v) for label, v in times.items()},
           "partitions": {label: _partitions(files[label]) for label in files if "desktop" not in label},
           "files": files}
    if args.data_path:
        row["psnr"] = {"MindSpore float": _psnr(float_ckpt, spec, args, out_dir, "float"),
                       "MindSpore fake-quant": _psnr(quant_ckpt, spec, args, out_dir, "fakequant"),
                       "int8 ONNX (mobile)": _psnr(files["ORT int8 mobile"], spec, args, out_dir, "onnx_int8"),
                       "int8 TFLite": _psnr(files["LiteRT int8"], spec, args, out_dir, "tflite_int8")}
    return row


def _partition_cell(entry):
    if entry is None:
        return "-"
    taken = entry.get("supported", entry.get("delegated"))
    return f"{entry['partitions']} ({taken}/{entry['nodes']})"


def print_tables(rows, args):
    h, w = args.input
    labels = [label for label, _, _ in FILES]
    print(f"\nLatency (ms), 1 x C x {h} x {w}, {args.threads} threads, median of {args.runs} runs after "
          f"{args.warmup} warm-ups, median of {args.rounds} alternating rounds")
    print("| model | " + " | ".join(labels) + " | LiteRT int8 speed-up | best int8 speed-up |")
    print("|---" * (len(labels) + 3) + "|")
    for r in rows:
        t = r["latency_ms"]
        litert = t["LiteRT float32"] / t["LiteRT int8"]
        best = max(litert, t["ORT float desktop"] / t["ORT int8 desktop"], t["ORT float mobile"] / t["ORT int8 mobile"])
        print(f"| {r['model']} | " + " | ".join(f"{t[label]:.1f}" for label in labels)
              + f" | {litert:.2f}x | {best:.2f}x |")
    print("\nDelegate partitions of the mobile files: partitions, nodes taken / nodes")
    print("| model | file | NNAPI | CoreML MLProgram | CoreML NeuralNetwork | XNNPACK |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        for label, report in r["partitions"].items():
            cells = [_partition_cell(report.get(name)) for name in
                     ("NNAPI", "CoreML MLProgram", "CoreML NeuralNetwork", "XNNPACK")]
            print(f"| {r['model']} | {label} | " + " | ".join(cells) + " |")
    if all("psnr" in r for r in rows) and rows:
        kinds = list(rows[0]["psnr"])
        print("\nPSNR (Y, dB) Set5 / Set14")
        print("| model | " + " | ".join(kinds) + " | TFLite int8 - fake-quant (Set5) |")
        print("|---" * (len(kinds) + 2) + "|")
        for r in rows:
            p = r["psnr"]
            print(f"| {r['model']} | " + " | ".join(f"{p[k]['Set5']:.3f} / {p[k]['Set14']:.3f}" for k in kinds)
                  + f" | {p['int8 TFLite']['Set5'] - p['MindSpore fake-quant']['Set5']:+.3f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True,
                        help="comma list of model:variant:scale:float_ckpt:calibrated_ckpt")
    parser.add_argument("--input", default="360,640", type=lambda s: tuple(int(v) for v in s.split(",")),
                        help="LR height,width of the exported files (Mobile-AI: 360,640)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data_path", default="", help="root holding benchmark/Set5 and Set14; empty = no PSNR")
    parser.add_argument("--out_dir", default=os.path.join(ROOT, "outputs", "bench_mobile"))
    args = parser.parse_args()
    rows = []
    for spec in [s for s in args.models.split(",") if s]:
        print(f"{spec}:", flush=True)
        rows.append(bench_model(spec, args))
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "bench_mobile.json"), "w", encoding="utf-8") as handle:
        json.dump({"args": vars(args), "rows": rows}, handle, indent=1)
    print_tables(rows, args)


if __name__ == "__main__":
    main()
