"""export.py engine: checkpoint -> MindIR / ONNX / ORT / TFLite file (float, float16 or int8),
verified against MindSpore.

``--target desktop`` writes the x86 graphs (dynamic H/W); ``--target mobile`` fixed-shape
graphs of phone-delegate ops (:mod:`src.export.onnx.profiles`), with their ORT-Mobile partition
report (:mod:`src.export.onnx.mobile_check`); TFLite files are translated from the mobile graph
(:mod:`src.export.tflite.tflite_export`) and report their XNNPACK partitions.

Always the deploy form (collapsed SESR, plain ETDS/ECBSR). A calibrated or QAT
checkpoint exports its fake-quant graph with ``--quant none`` and a real int8
QDQ graph with ``--quant int8`` (ONNX/ORT; full-integer for TFLITE). Every file is written atomically and
checked on a real photo (the first built-in sample image, resized to the
example size) and, for the dynamic formats, on a second size.
"""
import os

import numpy as np
import cv2

from src.data.eval_sets import sample_set
from src.data.image_io import read_rgb
from src.data.transforms import rgb_to_ycbcr01
from src.export.deploy_calibration import calibrate_missing_grids
from src.runtime.metadata import export_metadata
from src.export.sections import export_sections
from src.quantlib.deploy import is_deployment
from src.quantlib.quant_layers import quant_layers
from src.utils.atomic import atomic_target, refuse_same_file
from src.weights.checkpoint import open_checkpoint
from src.weights.loader import load_float_and_quantized
from src.errors import UserError
from src.export.mindir import export_mindir, mindir_max_diff
from src.export.onnx.mobile_check import format_report, partition_report
from src.export.onnx.onnx_float import max_diff, save_onnx
from src.export.onnx.onnx_qdq import integer_kernels, output_ranges_for
from src.export.onnx.ort_format import onnx_to_ort, ort_op_types
from src.export.onnx.profiles import MOBILE_OPS, build_onnx
from src.export.tflite.tflite_export import TFLiteOptions, check_request, export_tflite
from src.paths import select_checkpoint
from src.runtime.sessions import ort_session, run_onnx

FLOAT_TOLERANCE = 1e-4
ORT_TOLERANCE = 1e-5  # .ort vs the .onnx it was converted from (float: sums reordered)
# int8: onnxruntime's CPU provider applies the .ort's recorded fusions (integer QLinearConv) where the
# .onnx session may requantize on another path: a tie of one layer's rounding flips one level there and
# can grow through the next layers (deploy W8A8 at 360 x 640: ABPN x3 0.35 % of the output values one
# level apart, 9 of 6.2 M two; ECBSR x3 0.09 % one level, 216 more, up to 8 levels, through the PReLU
# split's k; ETDS x3 and ABPN-ET x3, whose plain forms carry weights up to 16, 0.25-1.1 % of the values
# more than one level apart, 53.6-58.9 dB). Allowed: at most ORT_INT8_FAR_FRACTION of the values more
# than one level apart and a PSNR of the .ort output against the .onnx output of at least
# ORT_INT8_MIN_PSNR dB; a wrong conversion (a dropped or misplaced op) is far below both. What the
# user gets is measured on the .ort itself (eval.py --pre_trained FILE.ort).
ORT_INT8_TOLERANCE = 1.0 / 255 + 1e-6
ORT_INT8_FAR_FRACTION = 0.02
ORT_INT8_MIN_PSNR = 45.0
EXTENSIONS = {"MINDIR": ".mindir", "ONNX": ".onnx", "ORT": ".ort", "AIR": ".air", "TFLITE": ".tflite"}


def parse_input_shape(text, n_colors):
    """'1,3,360,640' -> (1, 3, 360, 640); empty -> the mobile benchmark LR size for this model."""
    if not str(text).strip():
        return (1, n_colors, 360, 640)
    try:
        shape = tuple(int(v) for v in str(text).replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise UserError(f"--input_shape must be N,C,H,W integers such as 1,{n_colors},360,640, not '{text}'") from None
    if len(shape) != 4 or min(shape) < 1:
        raise UserError(f"--input_shape must be 4-D N,C,H,W with positive sizes such as 1,{n_colors},360,640, "
                         f"not '{text}'")
    if shape[1] != n_colors:
        raise UserError(f"--input_shape has {shape[1]} channels but this model takes {n_colors}; "
                         f"use 1,{n_colors},{shape[2]},{shape[3]}")
    if shape[0] != 1:
        raise UserError(f"--input_shape has a batch of {shape[0]}: eval.py and infer.py run one image at a time and "
                         f"refuse such files; use 1,{n_colors},{shape[2]},{shape[3]}")
    return shape


def check_window(shape, radius, target):
    """A fixed-size (mobile) file runs any image in windows of its input size with ``radius`` LR pixels of
    context on each side; a window of at most ``2 * radius`` pixels leaves no output pixel with its full
    context, so no tiling of it equals the model: ValueError naming the smallest exact size."""
    height, width = shape[2], shape[3]
    if target == "mobile" and min(height, width) <= 2 * int(radius):
        need = 2 * int(radius) + 1
        raise UserError(f"--input_shape {','.join(map(str, shape))}: a fixed {height}x{width} window is too small for "
                         f"this model's receptive radius of {radius} LR pixels on each side (windows of it cannot "
                         f"give the model's output); use at least 1,{shape[1]},{max(height, need)},"
                         f"{max(width, need)} (phones: 1,{shape[1]},360,640)")


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


def default_file_name(request, quant):
    """``<output_path>/<model>_<variant>_x<scale>[_int8|_fp16][_mobile].<ext>`` for ``request``
    (:class:`~src.export.sections.ExportRequest`) written with ``quant``."""
    model, fmt = request.model, request.settings.file_format
    stem = f"{model.model}_{model.variant}_x{model.scale}" + ("_int8" if quant == "int8" else
                                                               "_fp16" if quant == "float16" else "")
    if fmt in ("ONNX", "MINDIR") and export_target(request.settings) == "mobile":
        stem += "_mobile"  # beside the desktop file of the same model
    return os.path.join(request.output_path, stem + EXTENSIONS[fmt])


def export_path(request):
    """The file export.py writes for ``request`` (:class:`~src.export.sections.ExportRequest`):
    ``--export_file`` (its format's extension added when missing) or
    ``<output_path>/<model>_<variant>_x<scale>[_int8|_fp16][_mobile].<ext>`` (``_mobile``: a mobile ONNX or MINDIR)."""
    settings = request.settings
    path = settings.export_file or default_file_name(request, settings.quant)
    extension = EXTENSIONS.get(settings.file_format, "")
    return path if path.endswith(extension) else path + extension


def export_target(settings):
    """'mobile' or 'desktop' for ``settings`` (:class:`~src.export.sections.ExportSettings`): ``--target``,
    where ``auto`` is mobile for TFLITE and ORT files (phone runtimes) and desktop for ONNX, MINDIR
    and AIR (onnxruntime / MindSpore on a PC, dynamic H/W)."""
    if settings.target != "auto":
        return settings.target
    return "mobile" if str(settings.file_format).upper() in ("TFLITE", "ORT") else "desktop"


def _check_request(request, fp_net, q_net, target):
    settings = request.settings
    fmt, quant, io_dtype = settings.file_format, settings.quant, settings.io_dtype
    if fmt not in EXTENSIONS:
        raise UserError(f"--file_format must be one of {', '.join(EXTENSIONS)}, not '{fmt}'")
    if fmt == "TFLITE":
        if target != "mobile":
            raise UserError("a TFLite file is the mobile graph (fixed shape, delegate ops): use --target mobile "
                             "(or auto) with --file_format TFLITE")
        check_request(quant, io_dtype, q_net, (q_net or fp_net).n_colors)
        return
    given = [opt for opt, on in (("--quant float16", quant == "float16"),
                                 (f"--io_dtype {io_dtype}", io_dtype != "float32")) if on]
    if given:
        raise UserError(f"{' and '.join(given)} {'is a TFLite option' if len(given) == 1 else 'are TFLite options'}: "
                         f"add --file_format TFLITE or drop {' and '.join(o.split()[0] for o in given)}")
    if fmt == "AIR" and str(request.device_target).upper() != "ASCEND":
        raise UserError(f"AIR export needs an Ascend device (MindSpore writes AIR only there; device_target is "
                         f"{request.device_target}); use --file_format MINDIR or ONNX")
    if fmt == "AIR" and target == "mobile":
        raise UserError("--target mobile is for MINDIR, ONNX and ORT files; AIR is an Ascend format (use --target desktop)")
    if fmt == "ORT" and target != "mobile":
        raise UserError("an ORT file is the mobile ONNX graph for ORT-Mobile: use --target mobile (or auto) with "
                         "--file_format ORT, or --file_format ONNX for the desktop graph")
    if quant == "int8" and fmt not in ("ONNX", "ORT"):
        raise UserError(f"--quant int8 writes an ONNX QDQ graph; use --file_format ONNX or ORT (a {fmt} file of a "
                         "calibrated checkpoint holds its fake-quant graph: --quant none)")
    if quant == "int8" and q_net is None:
        raise UserError("--quant int8 needs a calibrated or QAT checkpoint as --pre_trained (make one with "
                         "eval.py --quant_method dbdc --w_bit 8 --a_bit 8 --save_quant_ckpt FILE)")


def _example_fits(net, inputs):
    """Run the checkpoint on the example first: a shape the network cannot take is one clear line."""
    from mindspore import Tensor  # pylint: disable=import-outside-toplevel
    try:
        net(Tensor(inputs[0]))
    except (RuntimeError, ValueError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise UserError(f"--input_shape {','.join(map(str, inputs[0].shape))}: the model cannot run at this size "
                         f"({first}); use a larger H and W such as 360,640") from None


def run_export(config, log=print, checkpoint=None):
    """Write the requested file and return a report dict (path, target, checks).

    ``config``: the loaded configuration; its sections (:func:`~src.export.sections.export_sections`)
    are built here, once, and the rest of the exporter reads them. ``checkpoint``: the configured
    checkpoint when the caller has read it already (a :class:`~src.weights.checkpoint.CheckpointFile`),
    else it is read here, once.
    """
    request = export_sections(config)
    read = open_checkpoint(checkpoint if checkpoint is not None else select_checkpoint(config))
    ckpt = read.path
    model, settings = request.model, request.settings
    fp_net, q_net, _ = load_float_and_quantized(model.model, model.variant, model.scale, read, model.option_dict())
    target = export_target(settings)
    _check_request(request, fp_net, q_net, target)
    n_colors = fp_net.n_colors
    shape = parse_input_shape(settings.input_shape, n_colors)
    check_window(shape, fp_net.receptive_radius, target)
    if settings.quant == "int8" and target == "mobile":
        _deployment_grids(request.calibration, ckpt, fp_net, q_net, log)
    path = export_path(request)
    refuse_same_file(ckpt, path, request.export_option, "--pre_trained")
    if target == "mobile" and settings.quant != "int8" and q_net is not None:
        log("note: the mobile profile writes the float graph of a calibrated checkpoint (fake-quant ops are no "
            "delegate ops); --quant int8 writes its calibrated integer graph")
        q_net = None
    net = q_net if q_net is not None else fp_net
    kind = _kind(settings, q_net)
    inputs = example_inputs(shape)
    if target == "mobile":  # fixed shape: the file takes the example's size only
        inputs = inputs[:1]
    _example_fits(net, inputs)
    metadata = export_metadata(net, kind)  # what the runners need to tile the file like the checkpoint
    report = {"file": path, "format": settings.file_format, "target": target, "kind": kind,
              "input_shape": list(shape), "checkpoint": ckpt,
              "metadata": None if settings.file_format == "AIR" else metadata}
    job = {"settings": settings, "fp_net": fp_net, "q_net": q_net, "net": net, "inputs": inputs, "path": path,
           "target": target, "kind": kind, "metadata": metadata, "n_colors": n_colors}
    WRITERS[settings.file_format](job, report, log)
    recorded = "" if settings.file_format == "AIR" else (
        f"; metadata: x{metadata['sr.scale']}, {metadata['sr.n_colors']} colour(s), receptive radius "
        f"{metadata['sr.receptive_radius']} LR pixels")
    log(f"wrote {path} ({settings.file_format}, {target}, {kind}, {os.path.getsize(path) / 1024:.0f} KiB) "
        f"from {ckpt}{recorded}")
    return report


def _deployment_grids(calibration, ckpt, fp_net, q_net, log):
    """Make sure the full-integer file's grids come from calibration, never from one example image: a
    deployment checkpoint carries them; an 8-bit checkpoint calibrated with PTQ4SR's placement (every
    checkpoint made before the deployment simulation) gets them calibrated on ``--calib_path`` when
    given in ``calibration`` (:class:`~src.data.calib_data.CalibrationImages`; DBDC on the patches eval.py
    draws), else ValueError saying what to pass. Below 8 bits no phone file is simulated: the extra
    grids are observed on the example, said in one line."""
    if q_net is None or is_deployment(q_net):
        return
    if {b for _, layer in quant_layers(q_net) for b in (layer.w_bit, layer.a_bit)} - {8}:
        log("note: below 8 bits no phone file is simulated: the grids the int8 file adds (conv outputs before a "
            "PReLU or Add, PReLU outputs) are observed on the example input; evaluate the written file for its PSNR")
        return
    if not calibration.given:
        raise UserError(f"{ckpt} holds no deployment grids (calibrated with the ptq4sr placement, or before they "
                         "existed), so its reported PSNR is not the int8 file's: pass --calib_path FOLDER to "
                         "calibrate the grids the file adds, or calibrate again with eval.py --quant_method dbdc_pac "
                         "--w_bit 8 --a_bit 8 --save_quant_ckpt FILE (deploy placement)")
    patches = calibration.patches(fp_net.scale, fp_net.n_colors)
    count = calibrate_missing_grids(fp_net, q_net, patches)
    log(f"{ckpt} had no deployment grids: calibrated {count} on {len(patches)} patches from {calibration.path} "
        "(DBDC); eval.py's number for this checkpoint was the ptq4sr placement's, evaluate the written file")


def _kind(settings, q_net):
    """What the file holds: ``int8 QDQ``, ``fake-quant`` or ``float``; TFLite: ``int8``,
    ``float16 weights`` or ``float`` (the float network, or full-integer int8)."""
    if settings.file_format == "TFLITE":
        return {"int8": "int8", "float16": "float16 weights"}.get(settings.quant, "float")
    return "int8 QDQ" if settings.quant == "int8" else ("fake-quant" if q_net is not None else "float")


def _sizes(inputs):
    return " and ".join(str(x.shape[2:]) for x in inputs)


def _write_air(job, _report, _log):  # reached on Ascend only
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    with atomic_target(job["path"], suffix=".air") as tmp:
        ms.export(job["net"], ms.Tensor(job["inputs"][0]), file_name=tmp[:-4], file_format="AIR")


def _write_mindir(job, report, log):
    fixed = job["inputs"][0].shape if job["target"] == "mobile" else None
    with atomic_target(job["path"], suffix=".mindir") as tmp:  # checked before it replaces the target
        export_mindir(job["net"], job["n_colors"], tmp, job["metadata"], shape=fixed)
        if job["settings"].export_check:
            report["max_abs_diff"] = mindir_max_diff(tmp, job["net"], job["inputs"])
            log(f"MindIR round trip (mindspore.load + nn.GraphCell) at {_sizes(job['inputs'])}: "
                f"max |diff| {report['max_abs_diff']:.2e}")
            _require(report["max_abs_diff"], FLOAT_TOLERANCE, "MindIR")
    if job["target"] == "mobile":
        log(f"for MindSpore Lite: converter_lite --fmk=MINDIR --modelFile={job['path']} "
            f"--outputFile={os.path.splitext(job['path'])[0]}  (writes a .ms file; not run here)")


def _onnx_model(job, log):
    """The ModelProto of the requested profile and quantization."""
    settings, q_net = job["settings"], job["q_net"]
    ranges = None
    if settings.quant == "int8":
        low = sorted({min(l.w_bit or 8, l.a_bit or 8) for _, l in quant_layers(q_net)} - {8})
        if low:
            log(f"note: layers at {low[0]} bits are stored in int8/uint8 containers; below 8 bits a Clip keeps "
                "the activation integers but stops onnxruntime fusing that Conv, and the int32 bias "
                "(scale = activation x weight scale) is coarse, so expect a larger gap than at W8A8")
        ranges = output_ranges_for(q_net, job["inputs"], job["target"])
    return build_onnx(job["fp_net"], q_net, job["inputs"][0], job["target"], settings.quant, ranges)


def _check_onnx(job, report, log, path):
    """Compare the written ONNX (or ORT) file with MindSpore on the example input(s)."""
    dynamic = "" if job["target"] == "mobile" else " (dynamic H/W)"
    if job["settings"].quant == "int8":
        if job["target"] == "desktop":
            report["integer_kernels"] = integer_kernels(path)
            if not report["integer_kernels"]:
                raise UserError(f"onnxruntime runs {job['path']} without integer kernels (no QLinearConv/ConvInteger)")
            log(f"onnxruntime optimised graph: {report['integer_kernels']}")
        report["max_abs_diff"] = max_diff(ort_session(path), job["q_net"], job["inputs"])
        log(f"max |int8 ONNX - fake-quant MindSpore| at {_sizes(job['inputs'])}: {report['max_abs_diff']:.4f} "
            "(integer requantisation rounding)")
    else:
        report["max_abs_diff"] = max_diff(ort_session(path), job["net"], job["inputs"])
        log(f"onnxruntime vs MindSpore at {_sizes(job['inputs'])}{dynamic}: max |diff| {report['max_abs_diff']:.2e}")
        if job["kind"] == "float":
            _require(report["max_abs_diff"], FLOAT_TOLERANCE, "ONNX")


def _log_partitions(job, report, log, onnx_path):
    if job["target"] != "mobile":
        return
    report["partitions"] = partition_report(onnx_path)
    log(f"ORT-Mobile partitions: {format_report(report['partitions'])}")


def _write_onnx(job, report, log):
    """The ONNX file, written to a temporary name and checked there: a file that fails its check never
    replaces an earlier one at the target."""
    model = _onnx_model(job, log)
    with atomic_target(job["path"], suffix=".onnx") as tmp:
        save_onnx(model, tmp, job["metadata"])
        if job["settings"].export_check:
            _check_onnx(job, report, log, tmp)
        _log_partitions(job, report, log, tmp)


def _write_ort(job, report, log):
    """The mobile ONNX graph converted by onnxruntime's ``convert_onnx_models_to_ort`` (in a temporary
    folder, then moved into place); checked against the ONNX graph it came from."""
    import shutil  # pylint: disable=import-outside-toplevel
    import tempfile  # pylint: disable=import-outside-toplevel
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = save_onnx(_onnx_model(job, log), os.path.join(tmp, "model.onnx"), job["metadata"])
        ort_path = onnx_to_ort(onnx_path, os.path.join(tmp, "ort"))
        report["ort_ops"] = _require_delegate_ops(ort_path)
        if job["settings"].export_check:
            tolerance = ORT_INT8_TOLERANCE if job["settings"].quant == "int8" else ORT_TOLERANCE
            report["ort_vs_onnx_max_abs_diff"] = ort_matches_onnx(ort_path, onnx_path, job["inputs"], tolerance)
            log(f".ort vs .onnx (onnxruntime) at {_sizes(job['inputs'])}: max |diff| "
                f"{report['ort_vs_onnx_max_abs_diff']:.2e}")
            _check_onnx(job, report, log, ort_path)
        _log_partitions(job, report, log, onnx_path)
        with atomic_target(job["path"], suffix=".ort") as target:
            shutil.copyfile(ort_path, target)


def _require_delegate_ops(ort_path):
    """The .ort file's node types; ValueError if any is not a mobile-profile op (a fused x86 kernel
    such as ``com.microsoft:QLinearConv`` would keep NNAPI and CoreML from taking the graph)."""
    ops = ort_op_types(ort_path)
    foreign = sorted(k for k in ops if k.split(":")[0] not in ("", "ai.onnx") or k.split(":")[1] not in MOBILE_OPS)
    if foreign:
        raise UserError(f"the .ort file holds {', '.join(foreign)}, which phone delegates do not take; "
                         "please report this model")
    return ops


def ort_matches_onnx(ort_path, onnx_path, inputs, tolerance=ORT_TOLERANCE):
    """Max |ORT-format output - ONNX output| over ``inputs``; ValueError above ``tolerance`` (the .ort
    graph is optimised offline, so float sums may be reordered: 3e-8 seen on SESR x2); for
    ``ORT_INT8_TOLERANCE`` (one 8-bit level) the integer-tie rule of ``ORT_INT8_*`` instead (outputs
    are images in [0, 1]: the PSNR is computed on differences capped at 1)."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    a, b = ort_session(ort_path), ort_session(onnx_path)
    diffs = [np.abs(run_onnx(a, x) - run_onnx(b, x)) for x in inputs]
    worst = max(float(d.max()) for d in diffs)
    if tolerance == ORT_INT8_TOLERANCE:  # integer kernels: ties of the requantisation (see ORT_INT8_*)
        count = max(1, sum(d.size for d in diffs))
        far = sum(int((d > tolerance).sum()) for d in diffs) / count
        mse = sum(float(np.square(np.minimum(d, 1.0).astype(np.float64)).sum()) for d in diffs) / count
        psnr = float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)
        if far <= ORT_INT8_FAR_FRACTION and psnr >= ORT_INT8_MIN_PSNR:
            return worst
        raise UserError(f"the .ort file differs from its .onnx graph by {worst:.2e} ({far:.3%} of the values more "
                         f"than one 8-bit level apart, PSNR {psnr:.1f} dB); please report this model")
    if not worst <= tolerance:
        raise UserError(f"the .ort file differs from its .onnx graph by {worst:.2e}; please report this model")
    return worst


def _write_tflite(job, report, log):
    """The mobile ONNX graph translated to TensorFlow and converted by TFLiteConverter
    (:mod:`src.export.tflite.tflite_export`); checked at the example size (the file has a fixed shape)."""
    settings = job["settings"]
    options = TFLiteOptions(settings.quant, settings.io_dtype, job["metadata"], settings.export_check)
    report.update(export_tflite(job["fp_net"], job["q_net"], job["inputs"][0], job["path"], options, log))


WRITERS = {"AIR": _write_air, "MINDIR": _write_mindir, "ONNX": _write_onnx, "ORT": _write_ort, "TFLITE": _write_tflite}


def _require(diff, tolerance, what):
    if not diff < tolerance:
        raise UserError(f"the {what} file differs from MindSpore by {diff:.2e} (> {tolerance:g}); "
                         "please report this model")
