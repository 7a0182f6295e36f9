"""export.py's phone path: one command from float weights to the phone file, with that file's own numbers.

``export.py --quant int8`` with *float* weights (a checkpoint without quantization, a PyTorch ``.pth``,
a float ``.tflite`` or a Keras SavedModel folder) runs, in this process, what a user would otherwise
type as five commands:

1. import a ``.pth`` / ``.tflite`` / SavedModel to ``<output_path>/<stem>_float.ckpt``
   (:mod:`src.weights.convert`, checked against the source);
2. calibrate with ``--quant_method`` (default :data:`DEFAULT_METHOD`, said in one line) at
   ``--w_bit``/``--a_bit`` on ``--calib_path``, and evaluate the float and the quantized model on
   ``--eval_datasets`` (eval.py's engine; the deployment placement, so the quantized model computes
   the file's integers), saving ``<stem>_<tag>.ckpt``;
3. write the int8 file (TFLITE unless ``--file_format`` is given; ``--phone_extras ort,float16`` add an
   int8 ``.ort`` and a float16-weights ``.tflite``) with export.py's engine;
4. evaluate every written file itself (``eval.py --pre_trained FILE``'s engine) on the same sets;
5. time each ``.tflite`` with LiteRT (XNNPACK, 2 threads) at its own input shape, read its XNNPACK
   coverage and its input/output tensors (dtype, layout, value range);
6. print one table and write ``<stem>_<tag>_phone.json`` beside the files.

Every number printed is measured in this run on the file it names.
"""
import json
import os
import statistics

from src.engine.evaluate import run_evaluation
from src.export.exporter import EXTENSIONS, example_inputs, run_export
from src.export.onnx.profiles import build_onnx
from src.models.choice import model_choice
from src.paths import resolve_path, select_checkpoint
from src.utils.atomic import atomic_target
from src.weights.checkpoint import model_meta, open_checkpoint, save_checkpoint
from src.weights.convert import convert_source, is_convertible
from src.weights.loader import load_for_inference
from src.errors import InputNotFoundError, UserError
from src.runtime.tflite_check import interpreter, latency_samples, xnnpack_partitions

#: the calibration of the phone path when --quant_method is not given (PTQ4SR's DBDC refined by PaC;
#: on the published ABPN x3 it loses 2-5x less than plain DBDC: docs/quantization.md)
DEFAULT_METHOD = "dbdc_pac"
PHONE_FORMATS = ("TFLITE", "ORT", "ONNX")
LATENCY_WARMUP, LATENCY_RUNS, LATENCY_ROUNDS = 3, 10, 3


def run_export_entry(config, log=print):
    """export.py's engine: the phone path for ``--quant int8`` from float weights (a ``.pth``/``.tflite``/
    SavedModel to import, or a float ``.ckpt``; see the module), else the exporter. A ``.ckpt`` is read
    once, here, and the exporter is handed that read (:class:`~src.weights.checkpoint.CheckpointFile`)."""
    int8 = str(config.quant) == "int8"
    source = resolve_path(config, config.pre_trained) if config.pre_trained else select_checkpoint(config)
    if int8 and is_convertible(source) and not str(source).lower().endswith(".ckpt"):
        return run_phone(config, log)
    read = open_checkpoint(source)  # where the configuration locates it (a path typed, or one in a preset)
    if int8 and not read.calibrated:
        return run_phone(config, log, checkpoint=read)
    return run_export(config, log, checkpoint=read)


def _float_checkpoint(config, source, out_dir, log):
    """``(checkpoint path, config)``: ``source`` itself, or its import under ``out_dir`` with the
    configuration's model keys set to the imported network's."""
    if not is_convertible(source) or str(source).lower().endswith(".ckpt"):
        return source, config
    typed = config.cli_keys
    model = config.model if "model" in typed or source.lower().endswith((".pth", ".pt")) else None
    variant = config.variant if "variant" in typed or model else None
    scale = config.scale if "scale" in typed or model else None
    net, params, notes = convert_source(source, model, variant, scale, pixel_range=str(config.pixel_range))
    for note in notes:
        log(note)
    meta = model_meta(net)
    path = save_checkpoint(params, os.path.join(out_dir, f"{meta['model']}_{net.variant}_x{net.scale}_float.ckpt"),
                           meta=meta)
    log(f"imported {source} as {path}")
    keys = {k: v for k, v in meta.items() if k in config and k != "form"}
    return path, config.replace(**keys)


def _tensor_spec(detail):
    """``uint8 1x360x640x3 (NHWC), real = 0.003922 * (q - 0): 0..1`` of a LiteRT tensor detail."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    dtype = np.dtype(detail["dtype"]).name
    shape = "x".join(str(int(v)) for v in detail["shape"])
    scale, zero = detail.get("quantization", (0.0, 0))
    if dtype == "float32" or not scale:
        return f"{dtype} {shape} (NHWC), values as the model's pixels: [0, 1]"
    info = np.iinfo(detail["dtype"])
    low, high = scale * (info.min - zero), scale * (info.max - zero)
    return (f"{dtype} {shape} (NHWC), real = {scale:.6g} * (q - {zero}): {low:.4g}..{high:.4g}"
            + (" (pixel bytes 0..255 = [0, 1])" if abs(scale - 1 / 255) < 1e-9 and zero == 0 else ""))


def measure_tflite(path, threads=2):
    """``{latency_ms, xnnpack, input, output}`` of a .tflite file: the median over
    :data:`LATENCY_ROUNDS` rounds of the median of :data:`LATENCY_RUNS` runs (LiteRT, XNNPACK, ``threads``
    threads) at its own input shape, its XNNPACK partition report and its input/output tensor specs."""
    latency = statistics.median(latency_samples([path], threads, LATENCY_ROUNDS, LATENCY_WARMUP, LATENCY_RUNS)[0])
    interp = interpreter(path, threads)
    return {"latency_ms": round(latency, 2), "threads": threads, "xnnpack": xnnpack_partitions(path, threads),
            "input": _tensor_spec(interp.get_input_details()[0]),
            "output": _tensor_spec(interp.get_output_details()[0])}


def _scores(results):
    return {name: [round(r["psnr"], 4), round(r["ssim"], 4)] for name, r in results.items()}


def _files_to_write(config, out_dir, stem, tag, qckpt, float_ckpt):
    """``[(label, export config)]``: the int8 file, then the ``--phone_extras``."""
    fmt = _phone_format(config)
    main_file = config.export_file or os.path.join(out_dir, f"{stem}_{tag}_int8{EXTENSIONS[fmt]}")
    jobs = [(f"int8 {fmt.lower()}", config.replace(pre_trained=qckpt, file_format=fmt, quant="int8",
                                                  export_file=main_file))]
    extras = [str(e).lower() for e in config.phone_extras]
    if "ort" in extras and fmt != "ORT":
        jobs.append(("int8 ort", config.replace(pre_trained=qckpt, file_format="ORT", quant="int8",
                                                export_file=os.path.join(out_dir, f"{stem}_{tag}_int8.ort"))))
    if "float16" in extras:
        jobs.append(("float16 tflite", config.replace(pre_trained=float_ckpt, file_format="TFLITE", quant="float16",
                                                      io_dtype="float32",
                                                      export_file=os.path.join(out_dir, f"{stem}_fp16.tflite"))))
    return jobs


#: what scoring a written file reads of the user's options (eval.py --pre_trained FILE takes no quantization option)
_FILE_EVAL_KEYS = ("data_path", "eval_datasets", "cache_dir", "gt_mod", "metric_channel", "shave", "self_ensemble",
                   "tile_size", "tile_overlap", "max_tile_mem_gb", "pixel_range", "device_target", "mode")


def _file_config(config, path):
    """The configuration of ``eval.py --pre_trained path`` with the user's evaluation options."""
    values = dict(config.to_dict(), pre_trained=path, quant_method="", save_quant_ckpt="", save_sr=False,
                  result_file=path + ".eval.json")
    given = {k for k in config.cli_keys if k in _FILE_EVAL_KEYS} | {"pre_trained", "result_file"}
    return type(config)(values, given, config.path, config.spelled)


def _phone_format(config):
    """The int8 file's format: ``--file_format`` when typed, else TFLITE."""
    return str(config.file_format).upper() if "file_format" in config.cli_keys else "TFLITE"


def _check_before_work(config):
    """Refuse, before anything is imported or calibrated, a format the phone path does not write and
    missing calibration images (one line each, naming the option)."""
    fmt = _phone_format(config)
    if fmt not in PHONE_FORMATS:
        raise UserError(f"--quant int8 from float weights writes a phone file: --file_format TFLITE, ORT or ONNX, "
                         f"not {fmt}")
    calib = resolve_path(config, config.calib_path)
    if not os.path.isdir(calib):
        raise InputNotFoundError(f"--quant int8 from float weights calibrates first: calibration folder not found: "
                                f"{calib} (set --calib_path to a folder of images)")


def _refuse_without_mobile_form(config, float_ckpt):
    """Build the float network's mobile graph at a small fixed shape before calibrating: a network the phone
    delegates cannot run (:class:`~src.export.onnx.mobile_rewrites.MobileUnsupported`, e.g. EDSR-baseline's
    mean shift) is refused in one line now, not after the calibration. ``float_ckpt``: a path or the
    :class:`~src.weights.checkpoint.CheckpointFile` already read."""
    choice = model_choice(config)
    fp_net, _ = load_for_inference(choice.model, choice.variant, choice.scale, float_ckpt, choice.option_dict())
    build_onnx(fp_net, None, example_inputs((1, fp_net.n_colors, 32, 32))[0], "mobile", "none")


def run_phone(config, log=print, checkpoint=None):
    """The phone path (see the module docstring); returns the summary dict it writes as JSON. ``checkpoint``:
    the float ``.ckpt`` when the caller has read it already (a :class:`~src.weights.checkpoint.CheckpointFile`),
    so the check of its mobile form does not read it again."""
    _check_before_work(config)
    out_dir = resolve_path(config, config.output_path)
    source = resolve_path(config, config.pre_trained) if config.pre_trained else select_checkpoint(config)
    float_ckpt, config = _float_checkpoint(config, source, out_dir, log)
    _refuse_without_mobile_form(config, checkpoint if checkpoint is not None else float_ckpt)
    stem = f"{config.model}_{config.variant}_x{config.scale}"
    method = config.quant_method or DEFAULT_METHOD
    if not config.quant_method:
        log(f"calibrating with {method}, the default of the phone path (--quant_method to choose another)")
    tag = f"w{config.w_bit}a{config.a_bit}_{method}"
    qckpt = os.path.join(out_dir, f"{stem}_{tag}.ckpt")
    log(f"[1/3] calibrate ({method} W{config.w_bit}A{config.a_bit}) and evaluate float and quantized")
    quantized = run_evaluation(config.replace(pre_trained=float_ckpt, quant_method=method, save_quant_ckpt=qckpt,
                                              save_sr=False, result_file=os.path.join(out_dir, f"{stem}_{tag}_eval.json")),
                               log)
    files = []
    jobs = _files_to_write(config, out_dir, stem, tag, qckpt, float_ckpt)
    for index, (label, job) in enumerate(jobs, 1):
        log(f"[2/3] write {label} ({index}/{len(jobs)})")
        written = run_export(job, log)
        files.append({"label": label, "file": written["file"], "size_kb": round(os.path.getsize(written["file"]) / 1024, 1)})
    for index, entry in enumerate(files, 1):
        log(f"[3/3] evaluate {entry['file']} ({index}/{len(files)})")
        report = run_evaluation(_file_config(config, entry["file"]), log)
        entry["psnr_ssim"] = _scores(report["results"])
        entry["report"] = entry["file"] + ".eval.json"
        if entry["file"].endswith(".tflite"):
            entry.update(measure_tflite(entry["file"]))
    summary = {"model": stem, "method": method, "w_bit": int(config.w_bit), "a_bit": int(config.a_bit),
               "float_checkpoint": float_ckpt, "quantized_checkpoint": qckpt,
               "float": _scores(quantized["results_fp"]), "quantized": _scores(quantized["results"]),
               "calibration": quantized.get("quant", {}), "files": files,
               "protocol": quantized.get("protocol", {})}
    path = os.path.join(out_dir, f"{stem}_{tag}_phone.json")
    with atomic_target(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2)
    for line in summary_lines(summary):
        log(line)
    log(f"summary written to {path}")
    return summary


def summary_lines(summary):
    """The phone path's table (Markdown) and the files' facts as text lines; every row measured in the run."""
    sets = list(summary["float"])
    head = f"{summary['model']}, {summary['method']} W{summary['w_bit']}A{summary['a_bit']}: PSNR-Y (dB) / SSIM"
    lines = ["", head, "",
             "| | " + " | ".join(sets) + " | size KB | LiteRT ms | XNNPACK |",
             "|---|" + "---|" * (len(sets) + 3)]
    rows = [("float checkpoint", summary["float"], {}),
            ("quantized model (reported)", summary["quantized"], {})]
    rows += [(f"{f['label']} file", f["psnr_ssim"], f) for f in summary["files"]]
    for label, scores, facts in rows:
        cells = [f"{scores[s][0]:.2f} / {scores[s][1]:.4f}" for s in sets]
        xnn = facts.get("xnnpack")
        cells += [f"{facts['size_kb']:.0f}" if facts else "",
                  f"{facts['latency_ms']:.2f}" if "latency_ms" in facts else "",
                  f"{xnn['delegated']}/{xnn['nodes']} nodes, {xnn['partitions']} partition(s)" if xnn else ""]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    base = summary["float"]
    for f in summary["files"]:
        loss = ", ".join(f"{s} {f['psnr_ssim'][s][0] - base[s][0]:+.3f} dB" for s in sets)
        lines.append(f"{f['label']}: {f['file']} (vs float: {loss})")
        if "input" in f:
            lines.append(f"  input  {f['input']}")
            lines.append(f"  output {f['output']}")
            lines.append(f"  latency: LiteRT {f['threads']} threads, XNNPACK, at the file's input shape; "
                         f"scores: {f['report']}")
    lines.append(f"float checkpoint: {summary['float_checkpoint']}")
    lines.append(f"calibrated checkpoint: {summary['quantized_checkpoint']}")
    return lines
