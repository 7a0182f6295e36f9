"""Latency of exported models at the mobile benchmark size, and int8 ONNX fidelity.

    python scripts/bench_export_latency.py \
        --models abpn:M4C28:3:abpn_x3.ckpt,etds:M4C32:3:etds_x3.ckpt,sesr:M5:2: \
        --calib_path ../shared/data/train --data_path ../shared/data

For each ``model:variant:scale:checkpoint`` (empty checkpoint = random weights,
timing only) on a 1 x C x 360 x 640 LR input: MindSpore graph mode FP32,
onnxruntime FP32 and onnxruntime int8 (QDQ from a W8A8 DBDC calibration on
``calib_num`` patches, after activation-range equalisation with ``--equalize``),
median of ``--runs`` runs after ``--warmup`` runs (onnxruntime: median of ``--rounds`` such
medians, float and int8 alternating), all in this process. With ``--data_path`` it also prints Set5 PSNR (Y) of the MindSpore
fake-quant model and of the int8 ONNX file made from it.
"""
import argparse
import os
import statistics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import _bootstrap  # noqa: E402,F401  pylint: disable=unused-import,wrong-import-position  (the project root on sys.path)

import src  # noqa: E402,F401  (CPU runtime defaults before mindspore loads)
from src.utils.timing import median_ms  # noqa: E402




def bench_model(spec, args):
    import numpy as np  # pylint: disable=import-outside-toplevel
    from mindspore import Tensor  # pylint: disable=import-outside-toplevel
    from src.runtime.runners import OnnxRunner  # pylint: disable=import-outside-toplevel
    from src.export.onnx.onnx_float import float_onnx, optimized_float, save_onnx  # pylint: disable=import-outside-toplevel
    from src.runtime.sessions import ort_session, run_onnx  # pylint: disable=import-outside-toplevel
    from src.export.onnx.onnx_qdq import integer_kernels, observe_output_ranges, quantize_onnx  # pylint: disable=import-outside-toplevel
    from src.engine.evaluator import set_psnr  # pylint: disable=import-outside-toplevel
    from src.models.registry import create_model  # pylint: disable=import-outside-toplevel
    from src.data.calib_data import batches_of, calibration_patches  # pylint: disable=import-outside-toplevel
    from src.quantlib.calibrate import calibrate  # pylint: disable=import-outside-toplevel
    from src.quantlib.quant_layers import QuantConfig  # pylint: disable=import-outside-toplevel
    from src.quantlib.equalize import equalize  # pylint: disable=import-outside-toplevel
    from src.weights.loader import load_for_inference  # pylint: disable=import-outside-toplevel
    model, variant, scale, ckpt = (spec.split(":") + [""])[:4]
    scale = int(scale)

    def build():
        if ckpt:
            return load_for_inference(model, variant, scale, ckpt)[0]
        return create_model(model, variant, scale)
    fp_net, q_net = build(), build()
    fp_net.set_train(False)
    n_colors = fp_net.n_colors
    height, width = args.input
    x = np.random.default_rng(0).random((1, n_colors, height, width)).astype(np.float32)
    batches = batches_of(calibration_patches(args.calib_path, args.calib_num, scale, 192, 0, n_colors), 2)
    if args.equalize:  # same scales in both: the float file stays the same function
        equalize(fp_net, batches, others=(q_net,))
    calibrate(q_net, batches, "dbdc", QuantConfig(8, 8))
    q_net.set_train(False)
    out_dir = args.out_dir
    float_model = float_onnx(fp_net, x)  # traced once: MindSpore cannot export the same Cell twice
    fp_path = save_onnx(optimized_float(float_model), os.path.join(out_dir, f"{model}_{variant}_x{scale}.onnx"))
    int8_path = save_onnx(quantize_onnx(float_model, q_net, observe_output_ranges(q_net, batches)),
                          os.path.join(out_dir, f"{model}_{variant}_x{scale}_int8.onnx"))
    kernels = integer_kernels(int8_path)
    tx = Tensor(x)
    ort_ms = {fp_path: [], int8_path: []}
    for _ in range(args.rounds):  # float and int8 alternate, a fresh session each round
        for path, times in ort_ms.items():
            session = ort_session(path, args.threads)
            times.append(median_ms(lambda s=session: run_onnx(s, x), args.warmup, args.runs))
            del session
    row = {"model": f"{model}-{variant} x{scale}" + ("" if ckpt else " (random weights)")
                    + (" equalised" if args.equalize else ""),
           "ms_fp32": median_ms(lambda: fp_net(tx).asnumpy(), args.warmup, args.runs),
           "ort_fp32": statistics.median(ort_ms[fp_path]),
           "ort_int8": statistics.median(ort_ms[int8_path]),
           "kernels": kernels}
    if args.data_path:
        row["psnr_fq"] = set_psnr(q_net, scale, args.data_path)
        row["psnr_int8"] = set_psnr(OnnxRunner(int8_path, args.threads), scale, args.data_path)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="abpn:M4C28:3:,etds:M4C32:3:,sesr:M5:2:")
    parser.add_argument("--input", default="360,640", type=lambda s: tuple(int(v) for v in s.split(",")))
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1,
                        help="onnxruntime timings: median over this many rounds (float and int8 alternate) "
                             "of the per-round medians; this machine's timings drift by 10-20%% over minutes")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = all cores)")
    parser.add_argument("--calib_path", default=os.path.join(ROOT, "..", "shared", "data", "train"))
    parser.add_argument("--calib_num", type=int, default=100)
    parser.add_argument("--data_path", default="", help="root holding benchmark/Set5 (PSNR rows); empty = skip")
    parser.add_argument("--equalize", action="store_true",
                        help="equalise activation ranges before the W8A8 calibration (src/quantlib/equalize.py)")
    parser.add_argument("--out_dir", default=os.path.join(ROOT, "outputs", "bench_export"))
    args = parser.parse_args()
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")
    rows = [bench_model(spec, args) for spec in args.models.split(",") if spec]
    h, w = args.input
    print(f"\nLatency, 1 x C x {h} x {w} LR input, median of {args.runs} runs after {args.warmup} warm-up"
          f"{f', median of {args.rounds} rounds for onnxruntime' if args.rounds > 1 else ''} (ms)")
    print(f"{'model':<34}{'MindSpore FP32':>15}{'ORT FP32':>10}{'ORT int8':>10}{'int8 speed-up':>15}"
          f"{'Set5 fake-quant':>17}{'Set5 int8 ONNX':>16}{'diff (dB)':>11}  integer kernels")
    for r in rows:
        psnr = (f"{r['psnr_fq']:>17.3f}{r['psnr_int8']:>16.3f}{r['psnr_int8'] - r['psnr_fq']:>11.3f}"
                if "psnr_fq" in r else f"{'-':>17}{'-':>16}{'-':>11}")
        print(f"{r['model']:<34}{r['ms_fp32']:>15.1f}{r['ort_fp32']:>10.1f}{r['ort_int8']:>10.1f}"
              f"{r['ort_fp32'] / r['ort_int8']:>14.2f}x{psnr}  {r['kernels']}")


if __name__ == "__main__":
    main()
