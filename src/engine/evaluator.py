"""The shared evaluation: labelled predictors + datasets -> PSNR/SSIM table and JSON report.

One evaluation (:func:`evaluate_subject`) scores labelled predictors -- the float checkpoint,
the float and quantized pair of a PTQ run (:mod:`src.engine.checkpoint_eval`), or an exported file
(:mod:`src.engine.file_eval`) -- on the same sets with the same protocol, logs one table and writes
one JSON report. eval.py's entry is :func:`src.engine.evaluate.run_evaluation`; this module imports
neither of the two, so the imports form no loop.
"""
import json
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from src.data.eval_sets import SAMPLE_SET, dataset_exists, load_pair, resolve_eval_set
from src.data.image_io import ImageError, write_png
from src.metrics import calculate_psnr, calculate_ssim
from src.metrics.psnr_ssim import SSIM_WINDOW
from src.utils.atomic import atomic_target
from src.engine.inference import SRPredictor
from src.engine.sections import shave_pixels
from src.errors import UserError


def select_datasets(evaluation):
    """Configured dataset names of ``evaluation`` (:class:`~src.engine.sections.Evaluation`), with the
    built-in sample set standing in for a missing DIV2K when the shipped defaults are used (no
    --data_path / --eval_datasets given). Returns ``(names, note)``; ``note`` is empty or one line."""
    data, scale = evaluation.data, evaluation.protocol.scale
    names = list(data.eval_datasets)
    note = ""
    defaults_in_use = not ({"data_path", "eval_datasets"} & evaluation.given)
    if (data.sample_fallback and defaults_in_use and "DIV2K" in names
            and not dataset_exists(data.data_path, "DIV2K", scale)):
        names = [SAMPLE_SET if n == "DIV2K" else n for n in names]
        note = (f"DIV2K not found under {data.data_path}: evaluating the built-in sample set "
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


def evaluate_set(predictor, eval_set, protocol, save_dir=None):
    """PSNR/SSIM of ``predictor`` on ``eval_set`` with ``protocol`` (:class:`~src.engine.sections.EvalProtocol`
    or an object with its fields: scale, gt_mod, metric_channel, shave, cache_dir).

    Returns ``{"psnr", "ssim", "images", "per_image", "alpha_dropped"}`` (means over the images;
    ``alpha_dropped`` lists images whose alpha channel was dropped, see ``ALPHA_POLICY``).
    An image that cannot be evaluated does not stop the others: after the whole set,
    ``SetEvaluationError`` lists every failed image and carries the per-image results.
    """
    shave, scale, channel = shave_pixels(protocol), protocol.scale, protocol.metric_channel
    psnrs, ssims, per_image, failures, alpha = [], [], [], [], []
    for image in tqdm(eval_set.images, desc=f"{eval_set.name} x{scale}", unit="img",
                      leave=False, file=sys.stderr, disable=len(eval_set.images) < 2):
        try:
            lr, hr = load_pair(eval_set, image, scale, protocol.gt_mod, protocol.cache_dir)
            check_metric_size(image, hr, shave)
            sr = predictor.predict(lr)
            psnr = calculate_psnr(sr, hr, shave, channel)
            ssim = calculate_ssim(sr, hr, shave, channel)
        except UserError as exc:  # an image judged unusable (ImageError, a size the metric cannot take)
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


def set_psnr(net, scale, data_path, name="Set5"):
    """Mean PSNR-Y (dB) of ``net`` (a network taking NCHW float32 in [0, 1]) on the benchmark set ``name`` under
    ``data_path`` (``<data_path>/benchmark/<name>/HR``, MATLAB-bicubic LR), whole images, shave = ``scale``: the
    quick number of benchmarks and tests (eval.py's protocol options are not read)."""
    eval_set = resolve_eval_set(data_path, name, scale)
    predictor = SRPredictor(net, scale, tile_size=-1)
    return float(np.mean([calculate_psnr(predictor.predict(lr), hr, shave=scale, channel="y")
                          for lr, hr in (load_pair(eval_set, image, scale) for image in eval_set.images)]))


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


@dataclass(frozen=True)
class Subject:
    """What one evaluation scores and how its log and report name it.

    ``predictors``: ``((report key, table label, predictor), ...)`` in the order they run on each
    set; the last one is reported as ``results`` (its SR images saved, its alpha notes logged),
    the others under their own key (``results_fp``); one predictor gives the plain table, two the
    side-by-side one. ``identity``: the report keys after the results (model, variant, scale,
    pre_trained, ...); ``notes``: keys after ``seconds``. ``save_dir``: folder of SR PNGs or None.
    The quantized report has never recorded ``data_path`` nor logged its SR folder
    (``data_path_recorded`` / ``sr_dir_logged`` False keep it as it was).
    """
    intro: str
    predictors: tuple
    identity: dict
    save_dir: str
    result_file: str
    notes: dict = field(default_factory=dict)
    data_path_recorded: bool = True
    sr_dir_logged: bool = True


def evaluate_predictors(predictors, eval_sets, protocol, save_dir, log):
    """Every labelled predictor of ``predictors`` (see :class:`Subject`) on every set, the table and
    alpha notes logged. Returns ``(results by report key, failed, seconds)``; a set where any
    predictor fails is recorded in ``failed`` (:func:`_evaluate_sets`) and the others go on."""
    last = len(predictors) - 1

    def run_one(eval_set):
        return {key: evaluate_set(predictor, eval_set, protocol, save_dir if i == last else None)
                for i, (key, _, predictor) in enumerate(predictors)}

    start = time.time()
    per_set, failed = _evaluate_sets(eval_sets, run_one, log)
    seconds = time.time() - start
    by_key = {key: {name: r[key] for name, r in per_set.items()} for key, _, _ in predictors}
    reported = by_key[predictors[-1][0]]
    if reported and len(predictors) == 1:
        log(format_table(reported))
    elif reported:
        log(format_side_by_side(by_key[predictors[0][0]], reported, predictors[-1][1]))
    _log_alpha(reported, log)
    return by_key, failed, seconds


def evaluate_subject(subject, evaluation, eval_sets, note, log):
    """Log ``subject.intro``, evaluate its predictors on ``eval_sets`` and write the one report
    (:func:`write_report`); returns the report dict. ``note``: the data note of :func:`select_datasets`."""
    log(subject.intro)
    by_key, failed, seconds = evaluate_predictors(subject.predictors, eval_sets, evaluation.protocol,
                                                  subject.save_dir, log)
    keys = [key for key, _, _ in subject.predictors]
    report = {"results": by_key[keys[-1]]}
    report.update({key: by_key[key] for key in keys[:-1]})
    report.update(subject.identity)
    report.update(protocol=protocol_record(evaluation.protocol), self_ensemble=bool(evaluation.inference.self_ensemble))
    if subject.data_path_recorded:
        report["data_path"] = evaluation.data.data_path
    report.update(data_note=note, seconds=round(seconds, 2), **subject.notes)
    return write_report(report, failed, subject.result_file, subject.save_dir if subject.sr_dir_logged else None, log)


def failed_report_path(result_file):
    """Where a run with failed sets writes its report: ``<name>_failed<ext>`` beside ``result_file``, so a
    failed run never replaces the report of an earlier good one."""
    stem, ext = os.path.splitext(result_file)
    return f"{stem}_failed{ext or '.json'}"


def write_report(report, failed, result_file, save_dir, log):
    """Write the JSON report, then raise ImageError if a set failed; a report with failures goes to
    :func:`failed_report_path` (the results of the sets that passed and the failures)."""
    if failed:
        report["failed"] = failed
        result_file = failed_report_path(result_file)
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


def format_side_by_side(fp_results, q_results, label):
    """The float and quantized (``label``, e.g. ``W8A8 dbdc``) results per set, with the PSNR drop in dB."""
    lines = [f"{'dataset':<22}{'FP PSNR':>9}{'FP SSIM':>9}{label + ' PSNR':>{max(14, len(label) + 6)}}"
             f"{'SSIM':>8}{'drop (dB)':>11}"]
    width = max(14, len(label) + 6)
    for name, q in q_results.items():
        fp = fp_results[name]
        lines.append(f"{name:<22}{fp['psnr']:>9.2f}{fp['ssim']:>9.4f}{q['psnr']:>{width}.2f}{q['ssim']:>8.4f}"
                     f"{fp['psnr'] - q['psnr']:>11.3f}")
    return "\n".join(lines)


def write_json(path, payload):
    with atomic_target(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=2)


def protocol_record(protocol):
    """``protocol`` (:class:`~src.engine.sections.EvalProtocol`) as recorded in reports (channel, shave,
    HR crop, LR source, alpha policy)."""
    return {"channel": protocol.metric_channel, "shave": shave_pixels(protocol), "gt_mod": protocol.gt_mod,
            "lr": "file if present, else MATLAB bicubic of HR", "alpha": ALPHA_POLICY}


def describe_protocol(evaluation):
    """``[Y channel, shave 2, HR mod 12, self-ensemble x8]``: the protocol as the intro line gives it."""
    protocol = evaluation.protocol
    return (f"[{protocol.metric_channel.upper()} channel, shave {shave_pixels(protocol)}, HR mod {protocol.gt_mod}"
            f"{', self-ensemble x8' if evaluation.inference.self_ensemble else ''}]")


def output_paths(evaluation, sr_folder, report_name):
    """``(SR image folder or None, report file)``: ``<output_path>/<sr_folder>`` with ``--save_sr``;
    ``--result_file``, else ``<output_path>/<report_name>``."""
    outputs = evaluation.outputs
    save_dir = os.path.join(outputs.output_path, sr_folder) if outputs.save_sr else None
    return save_dir, outputs.result_file or os.path.join(outputs.output_path, report_name)
