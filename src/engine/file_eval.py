"""eval.py on an exported file: PSNR/SSIM of the exact .onnx / .ort / .mindir / .tflite that ships.

    python eval.py --pre_trained abpn_M4C28_x3_int8.tflite --data_path /data --eval_datasets Set5,Set14

Model, variant and scale come from the file's metadata (or, for a file without
it, its shapes or a probe run, with a note); the protocol (Y channel, shave,
HR mod crop, tiling, self-ensemble) is the checkpoint path's
(:mod:`src.engine.evaluator`). A fixed-shape mobile file runs in windows of its
input size (:mod:`src.export.fixed_tiles`). The report JSON has the
checkpoint report's keys plus ``kind`` (e.g. ``"int8 TFLite (file, uint8 IO)"``)
and ``file_format``.
"""
import os

from src.engine.evaluator import eval_protocol, evaluate_with, select_datasets, write_report
from src.engine.inference import SRPredictor
from src.export.runners import EXTENSIONS, open_exported
from src.data.eval_sets import resolve_eval_set
from src.paths import resolve_path
from src.utils.atomic import refuse_same_file

# Options that calibrate or quantize a checkpoint: a file is already what it is.
_QUANT_KEYS = ("quant_method", "w_bit", "a_bit", "w_symmetric", "int8_scope", "fp_scope", "bit_table", "equalize",
               "percentile", "dbdc_p", "save_quant_ckpt", "quant")
_QUANT_PREFIXES = ("calib_", "pac_")


def is_exported_file(path):
    """True for a path whose extension is one the runners take (.onnx, .ort, .mindir, .tflite)."""
    return bool(path) and path.lower().endswith(EXTENSIONS)


def _refuse_quant_options(config, path):
    given = sorted(k for k in config.cli_keys if k in _QUANT_KEYS or k.startswith(_QUANT_PREFIXES))
    if config.quant_method and "quant_method" not in given:
        given.insert(0, "quant_method")
    if given:
        raise ValueError(f"--{given[0]} quantizes a checkpoint, but --pre_trained {path} is an exported file that "
                         f"already is what it is; drop {', '.join('--' + k for k in given)} (export an int8 file "
                         "with export.py --quant int8 instead)")


def _check_against_options(config, runner, path):
    if "scale" in config.cli_keys and int(config.scale) != runner.scale:
        raise ValueError(f"{path} upscales x{runner.scale} but --scale is {config.scale}; drop --scale or pass "
                         f"--scale {runner.scale}")
    recorded = (runner.metadata or {}).get("model")
    if recorded and "model" in config.cli_keys and config.model not in ("auto", recorded):
        raise ValueError(f"{path} holds a {recorded} model but --model is {config.model}; drop --model or pass "
                         f"--model {recorded}")


def run_file_evaluation(config, log=print):
    """Evaluate the exported file ``config.pre_trained``; returns the JSON-ready report dict.

    Raises ValueError (one line) for quantization options, a --scale or --model
    that disagrees with the file, and the runners' errors (unreadable file,
    missing runtime package); dataset errors as the checkpoint path.
    """
    path = resolve_path(config, config.pre_trained)
    _refuse_quant_options(config, path)
    if os.path.isdir(path):
        raise FileNotFoundError(f"--pre_trained {path} is a folder, not an exported model file; pass the file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--pre_trained {path} does not exist")
    if config.result_file:
        refuse_same_file(path, config.result_file, "--result_file", "--pre_trained")
    runner = open_exported(path, log=log, tile_overlap=config.tile_overlap)
    _check_against_options(config, runner, path)
    meta = runner.metadata or {}
    model = meta.get("model") or (config.model if config.model != "auto" else "unknown")
    variant = meta.get("variant") or (config.variant if config.variant != "auto" else "unknown")
    config = config.replace(scale=runner.scale)
    names, note = select_datasets(config)
    if note:
        log(note)
    data_path = resolve_path(config, config.data_path)
    eval_sets = [resolve_eval_set(data_path, name, config.scale) for name in names]
    protocol = eval_protocol(config)
    tiles = f", fixed {runner.io.tile_hw[0]}x{runner.io.tile_hw[1]} windows" if runner.io.tile_hw else ""
    log(f"evaluating {runner.kind} {path} ({model}-{variant} x{runner.scale}, {runner.io.layout}{tiles}) on "
        f"{', '.join(names)} [{config.metric_channel.upper()} channel, shave {protocol['shave']}, HR mod "
        f"{config.gt_mod}{', self-ensemble x8' if config.self_ensemble else ''}]")
    predictor = SRPredictor(runner, runner.scale, config.tile_size, config.tile_overlap, config.self_ensemble,
                            config.max_tile_mem_gb)
    stem = os.path.basename(path).replace(".", "_")
    save_dir = os.path.join(resolve_path(config, config.output_path), f"sr_{stem}") if config.save_sr else None
    results, failed, elapsed = evaluate_with(predictor, eval_sets, config, save_dir, log)
    report = {"results": results, "model": model, "variant": variant, "scale": runner.scale, "pre_trained": path,
              "kind": runner.kind, "file_format": runner.FORMAT, "layout": runner.io.layout,
              "fixed_input_hw": list(runner.io.tile_hw) if runner.io.tile_hw else None,
              "tile_overlap": runner.overlap if runner.io.tile_hw else None,
              "protocol": protocol, "self_ensemble": bool(config.self_ensemble), "data_path": data_path,
              "data_note": note, "seconds": round(elapsed, 2)}
    if runner.notice:
        report["notice"] = runner.notice
    result_file = config.result_file or os.path.join(resolve_path(config, config.output_path), f"eval_{stem}.json")
    return write_report(report, failed, result_file, save_dir, log)
