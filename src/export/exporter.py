"""export.py engine: checkpoint -> MindIR / ONNX / int8 ONNX file, verified against MindSpore.

Always the deploy form (collapsed SESR, plain ETDS/ECBSR). A calibrated or QAT
checkpoint exports its fake-quant graph with ``--quant none`` and a real int8
QDQ graph with ``--quant int8`` (ONNX only). Every file is written atomically and
checked on a real photo (the first built-in sample image, resized to the
example size) and, for the dynamic formats, on a second size.
"""
import os

import numpy as np
import cv2

from src.data.eval_sets import sample_set
from src.data.image_io import read_rgb
from src.data.transforms import rgb_to_ycbcr01
from src.export.metadata import export_metadata
from src.utils.atomic import atomic_target, refuse_same_file
from src.weights.loader import load_float_and_quantized

FLOAT_TOLERANCE = 1e-4
EXTENSIONS = {"MINDIR": ".mindir", "ONNX": ".onnx", "AIR": ".air", "TFLITE": ".tflite"}


def parse_input_shape(text, n_colors):
    """'1,3,360,640' -> (1, 3, 360, 640); empty -> the mobile benchmark LR size for this model."""
    if not str(text).strip():
        return (1, n_colors, 360, 640)
    try:
        shape = tuple(int(v) for v in str(text).replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise ValueError(f"--input_shape must be N,C,H,W integers such as 1,{n_colors},360,640, not '{text}'") from None
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"--input_shape must be 4-D N,C,H,W with positive sizes such as 1,{n_colors},360,640, "
                         f"not '{text}'")
    if shape[1] != n_colors:
        raise ValueError(f"--input_shape has {shape[1]} channels but this model takes {n_colors}; "
                         f"use 1,{n_colors},{shape[2]},{shape[3]}")
    return shape


def example_inputs(shape):
    """(example at ``shape``, a second smaller size) from a real photo, float32 NCHW in [0, 1]."""
    photo = read_rgb(sample_set().images[0].hr_path)
    batch, channels, height, width = shape
    out = []
    for h, w in ((height, width), (max(8, height // 2 + 3), max(8, width // 2 + 5))):
        img = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        if channels == 1:
            img = rgb_to_ycbcr01(img)[..., :1]
        out.append(np.ascontiguousarray(np.repeat(img.transpose(2, 0, 1)[None], batch, axis=0), np.float32))
    return out


def default_file_name(config, quant):
    from src.engine.evaluator import resolve_path  # pylint: disable=import-outside-toplevel
    stem = f"{config.model}_{config.variant}_x{config.scale}" + ("_int8" if quant == "int8" else
                                                                  "_fp16" if quant == "float16" else "")
    return os.path.join(resolve_path(config, config.output_path), stem + EXTENSIONS[config.file_format])


def export_path(config):
    """The file export.py writes: ``--file_name`` (its format's extension added when missing) or
    ``<output_path>/<model>_<variant>_x<scale>[_int8].<ext>``."""
    path = config.file_name or default_file_name(config, config.quant)
    extension = EXTENSIONS.get(config.file_format, "")
    return path if path.endswith(extension) else path + extension


def _check_request(config, fp_net, q_net):
    fmt, quant = config.file_format, config.quant
    if fmt not in EXTENSIONS:
        raise ValueError(f"--file_format must be MINDIR, ONNX, AIR or TFLITE, not '{fmt}'")
    if fmt == "TFLITE":
        from src.export.tflite_export import check_request  # pylint: disable=import-outside-toplevel
        check_request(quant, getattr(config, "io_dtype", "float32"), q_net, int(getattr(q_net or fp_net, "n_colors", 3)))
        return
    if quant == "float16" or getattr(config, "io_dtype", "float32") != "float32":
        raise ValueError("--quant float16 and --io_dtype uint8 are TFLite options: add --file_format TFLITE")
    if fmt == "AIR" and str(config.device_target).upper() != "ASCEND":
        raise ValueError(f"AIR export needs an Ascend device (MindSpore writes AIR only there; device_target is "
                         f"{config.device_target}); use --file_format MINDIR or ONNX")
    if quant == "int8" and fmt != "ONNX":
        raise ValueError(f"--quant int8 writes an ONNX QDQ graph; use --file_format ONNX (a {fmt} file of a "
                         "calibrated checkpoint holds its fake-quant graph: --quant none)")
    if quant == "int8" and q_net is None:
        raise ValueError("--quant int8 needs a calibrated or QAT checkpoint as --pre_trained (make one with "
                         "eval.py --quant_method dbdc --w_bit 8 --a_bit 8 --save_quant_ckpt FILE)")


def run_export(config, log=print):
    """Write the requested file and return a report dict (path, checks)."""
    from src.engine.evaluator import select_checkpoint  # pylint: disable=import-outside-toplevel
    from src.models.registry import config_options  # pylint: disable=import-outside-toplevel
    ckpt = select_checkpoint(config)
    fp_net, q_net, _ = load_float_and_quantized(config.model, config.variant, config.scale, ckpt,
                                                config_options(config))
    _check_request(config, fp_net, q_net)
    n_colors = int(getattr(fp_net, "n_colors", 3))
    shape = parse_input_shape(config.input_shape, n_colors)
    path = export_path(config)
    refuse_same_file(ckpt, path, "--file_name", "--pre_trained")
    net = q_net if q_net is not None else fp_net
    kind = "int8 QDQ" if config.quant == "int8" else ("fake-quant" if q_net is not None else "float")
    if config.file_format == "TFLITE":  # the mobile profile: the float network, or full-integer int8
        kind = {"int8": "int8", "float16": "float16 weights"}.get(config.quant, "float")
    inputs = example_inputs(shape)
    metadata = export_metadata(net, kind)  # what the runners need to tile the file like the checkpoint
    report = {"file": path, "format": config.file_format, "kind": kind, "input_shape": list(shape),
              "checkpoint": ckpt, "metadata": None if config.file_format == "AIR" else metadata}
    if config.file_format == "AIR":  # reached on Ascend only
        import mindspore as ms  # pylint: disable=import-outside-toplevel
        with atomic_target(path, suffix=".air") as tmp:
            ms.export(net, ms.Tensor(inputs[0]), file_name=tmp[:-4], file_format="AIR")
    elif config.file_format == "TFLITE":  # fixed shape: checked at the first example size only
        from src.export.tflite_export import export_tflite  # pylint: disable=import-outside-toplevel
        report.update(export_tflite(fp_net, q_net, inputs[0], path, config.quant, config.io_dtype, metadata,
                                    config.export_check, log))
    elif config.file_format == "MINDIR":
        from src.export.mindir import export_mindir, mindir_max_diff  # pylint: disable=import-outside-toplevel
        with atomic_target(path, suffix=".mindir") as tmp:
            export_mindir(net, n_colors, tmp, metadata)
        if config.export_check:
            report["max_abs_diff"] = mindir_max_diff(path, net, inputs)
            log(f"MindIR round trip (mindspore.load + nn.GraphCell) at {inputs[0].shape[2:]} and "
                f"{inputs[1].shape[2:]}: max |diff| {report['max_abs_diff']:.2e}")
            _require(report["max_abs_diff"], FLOAT_TOLERANCE, "MindIR")
    else:
        from src.export.onnx_float import float_onnx, max_diff, ort_session, save_onnx  # pylint: disable=import-outside-toplevel
        if config.quant == "int8":
            from src.export.onnx_qdq import integer_kernels, observe_output_ranges, quantize_onnx  # pylint: disable=import-outside-toplevel
            from src.quantlib.convert import quant_layers  # pylint: disable=import-outside-toplevel
            low = sorted({min(l.w_bit or 8, l.a_bit or 8) for _, l in quant_layers(q_net)} - {8})
            if low:
                log(f"note: layers at {low[0]} bits are stored in int8/uint8 containers; below 8 bits a Clip keeps "
                    "the activation integers but stops onnxruntime fusing that Conv, and the int32 bias "
                    "(scale = activation x weight scale) is coarse, so expect a larger gap than at W8A8")
            ranges = observe_output_ranges(q_net, inputs)
            save_onnx(quantize_onnx(float_onnx(fp_net, inputs[0]), q_net, ranges), path, metadata)
            if config.export_check:
                report["integer_kernels"] = integer_kernels(path)
                if not report["integer_kernels"]:
                    raise ValueError(f"onnxruntime runs {path} without integer kernels (no QLinearConv/ConvInteger)")
                report["max_abs_diff"] = max_diff(ort_session(path), q_net, inputs)
                log(f"onnxruntime optimised graph: {report['integer_kernels']}; max |int8 ONNX - fake-quant "
                    f"MindSpore| {report['max_abs_diff']:.4f} (integer requantisation rounding)")
        else:
            save_onnx(float_onnx(net, inputs[0], optimize=True), path, metadata)
            if config.export_check:
                report["max_abs_diff"] = max_diff(ort_session(path), net, inputs)
                log(f"onnxruntime vs MindSpore at {inputs[0].shape[2:]} and {inputs[1].shape[2:]} (dynamic H/W): "
                    f"max |diff| {report['max_abs_diff']:.2e}")
                if kind == "float":
                    _require(report["max_abs_diff"], FLOAT_TOLERANCE, "ONNX")
    recorded = "" if config.file_format == "AIR" else (
        f"; metadata: x{metadata['sr.scale']}, {metadata['sr.n_colors']} colour(s), receptive radius "
        f"{metadata['sr.receptive_radius']} LR pixels")
    log(f"wrote {path} ({config.file_format}, {kind}, {os.path.getsize(path) / 1024:.0f} KiB) from {ckpt}{recorded}")
    return report


def _require(diff, tolerance, what):
    if not diff < tolerance:
        raise ValueError(f"the {what} file differs from MindSpore by {diff:.2e} (> {tolerance:g}); "
                         "please report this model")
