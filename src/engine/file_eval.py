"""eval.py on an exported file: PSNR/SSIM of the exact .onnx / .ort / .mindir / .tflite that ships.

    python eval.py --pre_trained abpn_M4C28_x3_int8.tflite --data_path /data --eval_datasets Set5,Set14

Model, variant and scale come from the file's metadata (or, for a file without
it, its shapes or a probe run, with a note); the protocol (Y channel, shave,
HR mod crop, tiling, self-ensemble) is the checkpoint path's
(:mod:`src.engine.evaluator`). A fixed-shape mobile file runs in windows of its
input size (:mod:`src.runtime.fixed_tiles`). The report JSON has the
checkpoint report's keys plus ``kind`` (e.g. ``"int8 TFLite (file, uint8 IO)"``)
and ``file_format``.
"""
import os

from src.engine.evaluator import Subject, describe_protocol, evaluate_subject, output_paths, select_datasets
from src.engine.inference import SRPredictor
from src.runtime.runners import EXTENSIONS, open_exported
from src.data.eval_sets import resolve_eval_set
from src.utils.atomic import refuse_same_file
from src.errors import InputNotFoundError, UserError

# Options that calibrate or quantize a checkpoint: a file is already what it is.
_QUANT_KEYS = ("quant_method", "w_bit", "a_bit", "w_symmetric", "int8_scope", "fp_scope", "bit_table", "equalize",
               "weight_grid", "input_minmax", "percentile", "dbdc_p", "save_quant_ckpt", "quant")
_QUANT_PREFIXES = ("calib_", "pac_")


def is_exported_file(path):
    """True for a path whose extension is one the runners take (.onnx, .ort, .mindir, .tflite)."""
    return bool(path) and path.lower().endswith(EXTENSIONS)


def _refuse_quant_options(given, quant_method, path):
    """``given``: the options set on the command line; ``quant_method``: the configured one (a config file may set it)."""
    given = sorted(k for k in given if k in _QUANT_KEYS or k.startswith(_QUANT_PREFIXES))
    if quant_method and "quant_method" not in given:
        given.insert(0, "quant_method")
    if given:
        raise UserError(f"--{given[0]} quantizes a checkpoint, but --pre_trained {path} is an exported file that "
                         f"already is what it is; drop {', '.join('--' + k for k in given)} (export an int8 file "
                         "with export.py --quant int8 instead)")


def _check_against_options(evaluation, runner, path):
    model = evaluation.model
    if "scale" in evaluation.given and int(model.scale) != runner.scale:
        raise UserError(f"{path} upscales x{runner.scale} but --scale is {model.scale}; drop --scale or pass "
                         f"--scale {runner.scale}")
    recorded = (runner.metadata or {}).get("model")
    if recorded and "model" in evaluation.given and model.model not in ("auto", recorded):
        raise UserError(f"{path} holds a {recorded} model but --model is {model.model}; drop --model or pass "
                         f"--model {recorded}")


def run_file_evaluation(evaluation, path, log=print):
    """Evaluate the exported file at ``path`` (``--pre_trained`` located) as the sections ``evaluation``
    (:class:`~src.engine.sections.Evaluation`) say; returns the JSON-ready report dict.

    Raises :class:`~src.errors.UserError` (one line) for quantization options, a --scale or --model that
    disagrees with the file, and the runners' errors (unreadable file, missing runtime package); dataset
    errors as the checkpoint path.
    """
    _refuse_quant_options(evaluation.given, evaluation.quant.method, path)
    if os.path.isdir(path):
        raise InputNotFoundError(f"--pre_trained {path} is a folder, not an exported model file; pass the file")
    if not os.path.isfile(path):
        raise InputNotFoundError(f"--pre_trained {path} does not exist")
    if evaluation.outputs.result_file:
        refuse_same_file(path, evaluation.outputs.result_file, "--result_file", "--pre_trained")
    runner = open_exported(path, log=log, tile_overlap=evaluation.inference.tile_overlap,
                           pixel_range=evaluation.inference.pixel_range)
    _check_against_options(evaluation, runner, path)
    evaluation = evaluation.with_scale(runner.scale)
    names, note = select_datasets(evaluation)
    if note:
        log(note)
    eval_sets = [resolve_eval_set(evaluation.data.data_path, name, runner.scale) for name in names]
    return evaluate_subject(_file_subject(evaluation, runner, path, names), evaluation, eval_sets, note, log)


def _file_subject(evaluation, runner, path, names):
    """The exported file at ``path`` opened as ``runner``: one predictor, the file's facts in the report."""
    meta, model = runner.metadata or {}, evaluation.model
    # a file without metadata is named for what it is; the configured defaults (e.g. sesr-M5) are not its model
    name = meta.get("model") or (model.model if "model" in evaluation.given and model.model != "auto"
                                 else "unknown model")
    variant = meta.get("variant") or (model.variant if "variant" in evaluation.given and model.variant != "auto"
                                      else "")
    tiles = f", fixed {runner.io.tile_hw[0]}x{runner.io.tile_hw[1]} windows" if runner.io.tile_hw else ""
    label = f"{name}-{variant}" if variant else name
    pixels = f", pixels 0..{runner.pixel_range:g}" if runner.pixel_range != 1.0 else ""
    intro = (f"evaluating {runner.kind} {path} ({label} x{runner.scale}, {runner.io.layout}{pixels}{tiles}) on "
             f"{', '.join(names)} {describe_protocol(evaluation)}")
    predictor = SRPredictor.configured(runner, runner.scale, evaluation.inference)
    identity = {"model": name, "variant": variant, "scale": runner.scale, "pre_trained": path, "kind": runner.kind,
                "file_format": runner.FORMAT, "layout": runner.io.layout,
                "fixed_input_hw": list(runner.io.tile_hw) if runner.io.tile_hw else None,
                "tile_overlap": runner.overlap if runner.io.tile_hw else None, "pixel_range": runner.pixel_range,
                "receptive_radius": runner.receptive_radius,
                "receptive_radius_source": "metadata" if runner.metadata else "measured"}
    stem = os.path.basename(path).replace(".", "_")
    save_dir, result_file = output_paths(evaluation, f"sr_{stem}", f"eval_{stem}.json")
    return Subject(intro, (("results", None, predictor),), identity, save_dir, result_file,
                   notes={"notice": runner.notice} if runner.notice else {})
