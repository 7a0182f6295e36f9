"""Set5 PSNR (Y) of the int8 mobile ONNX graph vs the MindSpore fake-quant model it comes from.

    python scripts/mobile_onnx_fidelity.py --data_path /work/shared/data/benchmark \
        --models abpn:M4C28:3:/work/ck/abpn_x3_w8a8.ckpt,sesr:M5:2:/work/ck/sesr_x2_w8a8.ckpt

Each graph is built as ``export.py --target mobile --quant int8`` builds it (grids observed on
the exporter's photo example at 1 x C x 360 x 640) and then run at every Set5 image's size
(the fixed input/output dims are relaxed for this check only; the grids are those of the file).
Prints max |int8 ONNX - fake-quant| on the example and both Set5 PSNRs.
"""
import argparse

import _bootstrap  # noqa: E402,F401  pylint: disable=unused-import,wrong-import-position  (the project root on sys.path)

import src  # noqa: E402,F401  (CPU runtime defaults before mindspore loads)


def any_size(model):
    """A copy of a fixed-shape ModelProto with symbolic H/W on its input and output."""
    import onnx  # pylint: disable=import-outside-toplevel
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for value in list(out.graph.input) + list(out.graph.output):
        for dim, name in zip(value.type.tensor_type.shape.dim[2:], ("h", "w")):
            dim.ClearField("dim_value")
            dim.dim_param = value.name + name
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True, help="model:variant:scale:calibrated.ckpt,...")
    parser.add_argument("--data_path", required=True, help="folder holding Set5")
    parser.add_argument("--target", default="mobile")
    args = parser.parse_args(argv)
    import numpy as np  # pylint: disable=import-outside-toplevel
    from mindspore import Tensor  # pylint: disable=import-outside-toplevel
    from src.engine.evaluator import set_psnr  # pylint: disable=import-outside-toplevel
    from src.runtime.sessions import SessionNet  # pylint: disable=import-outside-toplevel
    from src.export.exporter import example_inputs  # pylint: disable=import-outside-toplevel
    from src.runtime.sessions import ort_session, run_onnx  # pylint: disable=import-outside-toplevel
    from src.export.onnx.onnx_qdq import observe_output_ranges  # pylint: disable=import-outside-toplevel
    from src.export.onnx.profiles import build_onnx  # pylint: disable=import-outside-toplevel
    from src.weights.loader import load_float_and_quantized  # pylint: disable=import-outside-toplevel
    for spec in args.models.split(","):
        name, variant, scale, ckpt = spec.split(":")
        fp, q, _ = load_float_and_quantized(name, variant, int(scale), ckpt, {})
        n_colors = fp.n_colors
        inputs = example_inputs((1, n_colors, 360, 640))
        ranges = observe_output_ranges(q, inputs)
        model = build_onnx(fp, q, inputs[0], args.target, "int8", ranges)
        diff = float(np.abs(run_onnx(ort_session(model), inputs[0]) - q(Tensor(inputs[0])).asnumpy()).max())
        fq = set_psnr(q, int(scale), args.data_path)
        onnx_psnr = set_psnr(SessionNet(any_size(model), fp), int(scale), args.data_path)
        print(f"{name} {variant} x{scale}: max|int8 ONNX - fake-quant| {diff:.4f} on the 360x640 example; "
              f"Set5 PSNR(Y) fake-quant {fq:.3f} dB, int8 {args.target} ONNX {onnx_psnr:.3f} dB "
              f"({onnx_psnr - fq:+.3f})", flush=True)


if __name__ == "__main__":
    main()
