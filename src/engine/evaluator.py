"""Evaluation engine: model + checkpoint + datasets -> PSNR/SSIM table and JSON report."""
import json
import os
import sys
import time

from tqdm import tqdm

from src.data.eval_sets import (SAMPLE_SET, dataset_exists, load_pair, resolve_eval_set)
from src.data.image_io import ImageError, write_png
from src.engine.inference import SRPredictor
from src.metrics import calculate_psnr, calculate_ssim
from src.metrics.psnr_ssim import SSIM_WINDOW
from src.utils.atomic import atomic_target, refuse_same_file
from src.models.registry import config_options
from src.paths import resolve_path, select_checkpoint
from src.weights.checkpoint import read_checkpoint
from src.weights.loader import load_for_inference, quant_config_of


def select_datasets(config):
    """Configured dataset names, with the built-in sample set standing in for a missing DIV2K
    when the shipped defaults are used (no --data_path / --eval_datasets given)."""
    names = list(config.eval_datasets)
    note = ""
    defaults_in_use = not ({"data_path", "eval_datasets"} & set(config.cli_keys))
    data_path = resolve_path(config, config.data_path)
    if (config.sample_fallback and defaults_in_use and "DIV2K" in names
            and not dataset_exists(data_path, "DIV2K", config.scale)):
        names = [SAMPLE_SET if n == "DIV2K" else n for n in names]
        note = (f"DIV2K not found under {data_path}: evaluating the built-in sample set "
                "(photos bundled with scikit-image) instead; pass --data_path to use DIV2K")
    return names, note


ALPHA_POLICY = ("dropped: PSNR/SSIM use the stored RGB values of images with an alpha channel "
                "(as BasicSR's cv2.imread in colour mode and MATLAB's imread do)")


class SetEvaluationError(ImageError):
    """Some images of one evaluation set failed (unreadable, wrong LR size, too small, ...).

    ``set_name``; ``failures``: ``[{"name", "error"}]``; ``per_image``: the results of the
    images that were evaluated (kept for the report). The message is one line.
    """

    def __init__(self, set_name, failures, per_image):
        self.set_name, self.failures, self.per_image = set_name, failures, per_image
        more = f" (and {len(failures) - 1} more image(s))" if len(failures) > 1 else ""
        super().__init__(f"{set_name}: {failures[0]['error']}{more}")


def check_metric_size(image, hr, shave):
    """Raise ``ImageError`` naming the HR file when the cropped HR ``hr`` (HxWx3) leaves less
    than SSIM's 11x11 window after shaving ``shave`` pixels at every border."""
    h, w = hr.shape[0] - 2 * shave, hr.shape[1] - 2 * shave
    if min(h, w) < SSIM_WINDOW:
        raise ImageError(f"{image.hr_path} is too small for SSIM: cropped HR {hr.shape[1]}x{hr.shape[0]} leaves "
                         f"{max(w, 0)}x{max(h, 0)} after shaving {shave} px per border, fewer than the "
                         f"{SSIM_WINDOW}x{SSIM_WINDOW} SSIM window; remove it from the set")


def evaluate_set(predictor, eval_set, config, save_dir=None):
    """PSNR/SSIM of ``predictor`` on ``eval_set`` with the configured protocol.

    Returns ``{"psnr", "ssim", "images", "per_image", "alpha_dropped"}`` (means over the images;
    ``alpha_dropped`` lists images whose alpha channel was dropped, see ``ALPHA_POLICY``).
    An image that cannot be evaluated does not stop the others: after the whole set,
    ``SetEvaluationError`` lists every failed image and carries the per-image results.
    """
    shave = config.scale if config.shave < 0 else config.shave
    psnrs, ssims, per_image, failures, alpha = [], [], [], [], []
    cache_dir = resolve_path(config, config.cache_dir)
    for image in tqdm(eval_set.images, desc=f"{eval_set.name} x{config.scale}", unit="img",
                      leave=False, file=sys.stderr, disable=len(eval_set.images) < 2):
        try:
            lr, hr = load_pair(eval_set, image, config.scale, config.gt_mod, cache_dir)
            check_metric_size(image, hr, shave)
            sr = predictor.predict(lr)
            psnr = calculate_psnr(sr, hr, shave, config.metric_channel)
            ssim = calculate_ssim(sr, hr, shave, config.metric_channel)
        except ValueError as exc:  # ImageError is a ValueError
            failures.append({"name": image.name, "error": str(exc)})
            continue
        psnrs.append(psnr)
        ssims.append(ssim)
        per_image.append({"name": image.name, "psnr": psnr, "ssim": ssim})
        if image.alpha_dropped:
            alpha.append(f"{image.name} ({'+'.join(image.alpha_dropped)})")
        if save_dir:
            write_png(os.path.join(save_dir, eval_set.name, f"{image.name}.png"), sr)
    if failures:
        raise SetEvaluationError(eval_set.name, failures, per_image)
    return {"psnr": sum(psnrs) / len(psnrs), "ssim": sum(ssims) / len(ssims),
            "images": len(psnrs), "per_image": per_image, "alpha_dropped": alpha}


def _evaluate_sets(eval_sets, run_one, log):
    """Run ``run_one(eval_set)`` for every set; a failing set is logged and recorded, the others go on.

    Returns ``(results, failed)``: ``results[name]`` what ``run_one`` returned; ``failed[name]``
    ``{"error", "failed_images", "per_image"}`` for each set that failed.
    """
    results, failed = {}, {}
    for eval_set in eval_sets:
        try:
            results[eval_set.name] = run_one(eval_set)
        except SetEvaluationError as exc:
            for failure in exc.failures:
                log(f"{eval_set.name}: not evaluated: {failure['error']}")
            failed[eval_set.name] = {"error": str(exc), "failed_images": exc.failures, "per_image": exc.per_image}
    return results, failed


def _log_alpha(results, log):
    for name, r in results.items():
        if r.get("alpha_dropped"):
            log(f"{name}: alpha channel dropped for {len(r['alpha_dropped'])} image(s) "
                f"({', '.join(r['alpha_dropped'])}); PSNR/SSIM use their stored RGB values")


def evaluate_with(predictor, eval_sets, config, save_dir, log):
    """PSNR/SSIM of ``predictor`` (an :class:`~src.engine.inference.SRPredictor`) on every set, the
    table logged. Returns ``(results, failed, seconds)`` as :func:`_evaluate_sets` (a failing set is
    recorded, the others go on)."""
    start = time.time()
    results, failed = _evaluate_sets(eval_sets, lambda s: evaluate_set(predictor, s, config, save_dir), log)
    elapsed = time.time() - start
    if results:
        log(format_table(results))
    _log_alpha(results, log)
    return results, failed, elapsed


def write_report(report, failed, result_file, save_dir, log):
    """Write the JSON report (failures included), then raise ImageError if a set failed."""
    if failed:
        report["failed"] = failed
    write_json(result_file, report)
    _raise_if_failed(failed, report["results"], result_file)
    log(f"results written to {result_file}" + (f"; SR images in {save_dir}" if save_dir else ""))
    return report


def _raise_if_failed(failed, results, result_file):
    if not failed:
        return
    kept = f"results of {', '.join(results)} and the failures are in {result_file}" if results else (
        f"the failures are listed in {result_file}")
    raise ImageError(f"evaluation failed: {'; '.join(f['error'] for f in failed.values())}; {kept}")


def format_table(results):
    lines = [f"{'dataset':<22}{'images':>7}{'PSNR (dB)':>11}{'SSIM':>9}"]
    for name, r in results.items():
        lines.append(f"{name:<22}{r['images']:>7}{r['psnr']:>11.2f}{r['ssim']:>9.4f}")
    return "\n".join(lines)


def write_json(path, payload):
    with atomic_target(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=2)


def run_evaluation(config, log=print):
    """Evaluate the configured model; returns the JSON-ready report dict. An exported file as
    ``--pre_trained`` (.onnx, .ort, .mindir, .tflite) is evaluated by :mod:`src.engine.file_eval`."""
    from src.engine.file_eval import is_exported_file, run_file_evaluation  # pylint: disable=import-outside-toplevel
    if is_exported_file(config.pre_trained):
        return run_file_evaluation(config, log)
    names, note = select_datasets(config)
    if note:
        log(note)
    ckpt = select_checkpoint(config)
    if config.result_file:
        refuse_same_file(ckpt, config.result_file, "--result_file", "--pre_trained")  # the path write_json uses
    data_path = resolve_path(config, config.data_path)
    eval_sets = [resolve_eval_set(data_path, name, config.scale) for name in names]  # fail before work
    _, meta = read_checkpoint(ckpt)
    if config.quant_method or quant_config_of(meta) is not None:
        return _run_quantized(config, ckpt, names, eval_sets, note, log)
    net, _ = load_for_inference(config.model, config.variant, config.scale, ckpt, config_options(config))
    protocol = eval_protocol(config)
    shave = protocol["shave"]
    log(f"evaluating {config.model}-{net.variant} x{config.scale} from {ckpt} on {', '.join(names)} "
        f"[{config.metric_channel.upper()} channel, shave {shave}, HR mod {config.gt_mod}"
        f"{', self-ensemble x8' if config.self_ensemble else ''}]")
    predictor = SRPredictor(net, config.scale, config.tile_size, config.tile_overlap,
                            config.self_ensemble, config.max_tile_mem_gb)
    save_dir = None
    if config.save_sr:
        save_dir = os.path.join(resolve_path(config, config.output_path),
                                f"sr_{config.model}_{net.variant}_x{config.scale}")
    results, failed, elapsed = evaluate_with(predictor, eval_sets, config, save_dir, log)
    report = {"results": results, "model": config.model, "variant": net.variant, "scale": config.scale,
              "pre_trained": ckpt, "protocol": protocol, "self_ensemble": bool(config.self_ensemble),
              "data_path": data_path, "data_note": note, "seconds": round(elapsed, 2)}
    result_file = config.result_file or os.path.join(
        resolve_path(config, config.output_path), f"eval_{config.model}_{net.variant}_x{config.scale}.json")
    return write_report(report, failed, result_file, save_dir, log)


def eval_protocol(config):
    """The evaluation protocol of ``config`` as recorded in reports (channel, shave, HR crop, LR source)."""
    shave = config.scale if config.shave < 0 else config.shave
    return {"channel": config.metric_channel, "shave": shave, "gt_mod": config.gt_mod,
            "lr": "file if present, else MATLAB bicubic of HR", "alpha": ALPHA_POLICY}


def _run_quantized(config, ckpt, names, eval_sets, note, log):
    """Float and quantized model on the same sets; the report's ``results`` are the quantized ones."""
    from src.engine.quant_eval import build_quantized, format_side_by_side, predictor_for  # pylint: disable=import-outside-toplevel
    fp_net, q_net, info = build_quantized(config, ckpt, config_options(config),
                                          lambda p: resolve_path(config, p), log)
    label = f"W{info['w_bit']}A{info['a_bit']} {info['method']}"
    log(f"evaluating {config.model}-{fp_net.variant} x{config.scale} from {ckpt}: FP and {label} on {', '.join(names)}")
    save_dir = None
    if config.save_sr:
        save_dir = os.path.join(resolve_path(config, config.output_path),
                                f"sr_{config.model}_{fp_net.variant}_x{config.scale}_w{info['w_bit']}a{info['a_bit']}")
    fp_pred, q_pred = predictor_for(fp_net, config), predictor_for(q_net, config)
    start = time.time()
    both, failed = _evaluate_sets(eval_sets, lambda s: (evaluate_set(fp_pred, s, config),
                                                        evaluate_set(q_pred, s, config, save_dir)), log)
    fp_results = {name: pair[0] for name, pair in both.items()}
    q_results = {name: pair[1] for name, pair in both.items()}
    if q_results:
        log(format_side_by_side(fp_results, q_results, label))
    _log_alpha(q_results, log)
    report = {"results": q_results, "results_fp": fp_results, "quant": info, "model": config.model,
              "variant": fp_net.variant, "scale": config.scale, "pre_trained": ckpt, "protocol": eval_protocol(config),
              "self_ensemble": bool(config.self_ensemble), "data_note": note, "seconds": round(time.time() - start, 2)}
    if failed:
        report["failed"] = failed
    result_file = config.result_file or os.path.join(
        resolve_path(config, config.output_path),
        f"eval_{config.model}_{fp_net.variant}_x{config.scale}_w{info['w_bit']}a{info['a_bit']}_{info['method']}.json")
    write_json(result_file, report)
    _raise_if_failed(failed, q_results, result_file)
    log(f"results written to {result_file}")
    return report
