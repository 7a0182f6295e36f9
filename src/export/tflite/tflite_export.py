"""export.py --file_format TFLITE: checkpoint networks -> checked .tflite file.

Steps: the mobile-profile ONNX graph (:func:`src.export.onnx.profiles.build_onnx`, fixed
shape, float or int8 QDQ at the calibrated grids) -> TF function -> TFLiteConverter
(:mod:`src.export.tflite.tflite_convert`) -> ``sr.*`` metadata inside (``sr_metadata``) ->
atomic write -> checks with LiteRT (:mod:`src.runtime.tflite_check`): every op a
builtin; for int8 no float op between the input QUANTIZE and the output DEQUANTIZE;
the XNNPACK partition report; the output against MindSpore on the exporter's check
image (float32: max |diff| < 1e-4; float16 and int8: reported).
"""
from dataclasses import dataclass

import numpy as np

from src.quantlib.deploy import is_deployment
from src.errors import UserError
from src.export.onnx.profiles import build_onnx
from src.export.tflite.tflite_convert import convert, tensorflow, write_tflite
from src.runtime import tflite_check

FLOAT_TOLERANCE = 1e-4


def check_request(quant, io_dtype, q_net, n_colors):
    """Refuse, before any work is done, a TFLITE request that cannot be served: ValueError when
    TensorFlow is not installed (naming requirements-mobile.txt), for ``quant`` 'int8' without a
    calibrated ``q_net``, for ``io_dtype`` 'uint8' with a float ``quant``, and for 'uint8' with a
    Y-channel model (``n_colors`` 1: its input is float BT.601 Y, not image bytes)."""
    tensorflow()  # the converter is installed (one line naming requirements-mobile.txt if not)
    if quant == "int8" and q_net is None:
        raise UserError("--quant int8 needs a calibrated or QAT checkpoint as --pre_trained (make one with "
                         "eval.py --quant_method dbdc --w_bit 8 --a_bit 8 --save_quant_ckpt FILE)")
    if io_dtype == "uint8" and quant != "int8":
        raise UserError("--io_dtype uint8 is for full-integer files: add --quant int8 (float files take float32)")
    if io_dtype == "uint8" and n_colors != 3:
        raise UserError("--io_dtype uint8 passes RGB image bytes straight in and out; this model takes a float "
                         "BT.601 Y channel computed from RGB (and its Y output is merged back with CbCr), so there "
                         "are no image bytes to pass: use --io_dtype float32")


@dataclass(frozen=True)
class TFLiteOptions:
    """What export.py's options ask of a .tflite file: ``quant`` ('none': float32, 'float16':
    float16 weights, 'int8': full-integer), ``io_dtype`` of the file's input and output
    ('float32' in [0, 1], or 'uint8' image bytes 0..255 for int8 RGB files), the ``sr.*``
    ``metadata`` map to store (None: none), ``check`` (run the file with LiteRT against
    MindSpore), and for int8 the conv ``output_ranges`` ({layer name: (min, max)}, float; None:
    observed on the example, see :func:`src.export.onnx.onnx_qdq.observe_output_ranges`)."""
    quant: str = "none"
    io_dtype: str = "float32"
    metadata: dict = None
    check: bool = True
    output_ranges: dict = None


def export_tflite(fp_net, q_net, example, path, options=TFLiteOptions(), log=print):
    """Write the TFLite file of ``fp_net`` (``options.quant`` none/float16) or of the calibrated
    ``q_net`` (int8) at the fixed shape of ``example`` (NCHW float32 in [0, 1]; the file's tensors
    are NHWC, see :mod:`src.export.tflite.tflite_graph`); returns a report dict (``ops``, and with
    ``options.check`` ``xnnpack`` and ``max_abs_diff``; for int8 ``float_ops_inside``). ValueError
    for a request or graph the converter or LiteRT cannot take, and when a float32 file differs
    from MindSpore by 1e-4 or more. ``log`` takes the check's report lines."""
    quant = options.quant
    example = np.ascontiguousarray(example, np.float32)
    if quant == "int8":  # ranges None: build_onnx's default (observed on the example unless a deployment model)
        graph = build_onnx(fp_net, q_net, example, "mobile", "int8", options.output_ranges)
    else:
        graph = build_onnx(fp_net, None, example, "mobile", "none")
    data, report = _convert_checked(graph, quant, options.io_dtype)
    metadata = _file_metadata(options.metadata, example.shape, options.io_dtype) if options.metadata else None
    write_tflite(data, path, metadata)
    if options.check:
        _check_against_mindspore(path, example, q_net if quant == "int8" else fp_net, quant, report, log)
    return report


def _convert_checked(graph, quant, io_dtype):
    """(TFLite bytes, report) of the mobile ``graph``; ValueError for a non-builtin op, or a float op
    inside an int8 file."""
    data = convert(graph, quant, io_dtype)
    model = tflite_check.read_model(data)
    report = {"ops": tflite_check.op_names(model)}
    extra = tflite_check.non_builtin_ops(model)
    if extra:
        raise UserError(f"the TFLite file holds non-builtin ops {', '.join(extra)}; please report this model")
    if quant == "int8":
        report["float_ops_inside"] = tflite_check.float_ops_inside(model)
        if report["float_ops_inside"]:
            raise UserError("the int8 TFLite file computes in float at "
                             + ", ".join(f"{name} (op {i})" for i, name in report["float_ops_inside"])
                             + "; please report this model")
    return data, report


def _file_metadata(metadata, nchw_shape, io_dtype):
    """The ``sr.*`` map with ``sr.input`` describing the file's NHWC input."""
    metadata = dict(metadata)
    n, c, h, w = nchw_shape
    metadata["sr.input"] = (f"{n} x {h} x {w} x {c} (NHWC, fixed) " + ("uint8 0..255" if io_dtype == "uint8" else
                            "float32 in [0, 1]") + (", RGB" if c == 3 else ", Y of BT.601 YCbCr"))
    return metadata


def _check_against_mindspore(path, example, ref_net, quant, report, log):
    """Run the written file with LiteRT at ``example``, log its XNNPACK partitions and its difference
    from ``ref_net`` (the float network, or the fake-quant one for int8); ValueError if LiteRT cannot
    run it, or a float32 file differs by 1e-4 or more."""
    from mindspore import Tensor  # pylint: disable=import-outside-toplevel
    try:
        interp = tflite_check.interpreter(path)
        out = tflite_check.run_nchw(interp, example)
    except (RuntimeError, ValueError) as exc:
        raise UserError(f"LiteRT cannot run {path} at input {list(example.shape)}: "
                         f"{str(exc).splitlines()[0][:200]}") from None
    report["xnnpack"] = tflite_check.xnnpack_partitions(path)
    log(tflite_check.partition_line(report["xnnpack"]))
    warning = tflite_check.partition_warning(report["xnnpack"])
    if warning:
        log(warning)
    ref = ref_net(Tensor(example)).asnumpy()
    if out.shape != ref.shape:
        raise UserError(f"the TFLite output {out.shape} differs from MindSpore's {ref.shape}; please report this model")
    report["max_abs_diff"] = float(np.abs(out - ref).max())
    if quant == "int8":
        # the file's output is an image (saturated to [0, 1]); a deployment model computes the file's integers
        image_diff = float(np.abs(np.clip(out, 0, 1) - np.clip(ref, 0, 1)).max()) * 255
        report["max_abs_diff_levels"] = image_diff
        if is_deployment(ref_net):
            log(f"LiteRT int8 vs the deployment model at {example.shape[2:]}: max |diff| {image_diff:.2f} 8-bit "
                "levels (0 but for ties of the integer requantisation)")
        else:
            log(f"LiteRT int8 vs fake-quant MindSpore (ptq4sr placement) at {example.shape[2:]}: max |diff| "
                f"{image_diff:.2f} 8-bit levels (the file rounds tensors this model keeps in float)")
        return
    what = "float32" if quant == "none" else "float16-weight"
    log(f"LiteRT {what} vs MindSpore at {example.shape[2:]}: max |diff| {report['max_abs_diff']:.2e}")
    if quant == "none" and not report["max_abs_diff"] < FLOAT_TOLERANCE:
        raise UserError(f"the TFLite file differs from MindSpore by {report['max_abs_diff']:.2e} (> "
                         f"{FLOAT_TOLERANCE:g}); please report this model")
