"""Post-training quantization inside evaluation: load or calibrate the quantized model (the float and
quantized pair is evaluated side by side by :mod:`src.engine.evaluator`). Settings come from the
typed :class:`~src.engine.sections.Quantization` section (its quantlib part from
:func:`~src.engine.sections.quantization_of`, the config edge)."""
import time
from dataclasses import replace

from src.export.deploy_calibration import DeployUnsupported, deploy_sites
from src.quantlib import quantize
from src.utils.atomic import refuse_same_file
from src.weights.checkpoint import model_meta, open_checkpoint, save_checkpoint
from src.weights.loader import load_float_and_quantized, load_for_inference, quant_config_of
from src.errors import UserError


def calibration_patches_for(quant, scale, fp_net):
    """The calibration patches of ``quant`` (:class:`~src.engine.sections.Quantization`; its ``images``),
    LR patches for ``scale`` in ``fp_net``'s colours (float32 N x C x h x w in [0, 1])."""
    return quant.images.patches(scale, fp_net.n_colors)


def load_or_calibrate(model, quant, ckpt, log):
    """(fp_net, q_net, qcfg, method, calibration) of ``model`` (:class:`~src.models.choice.ModelChoice`)
    from ``ckpt`` (a path, read once here, or a :class:`~src.weights.checkpoint.CheckpointFile`): a
    calibrated checkpoint's quantized net as is (``method`` as recorded, ``calibration`` None), or the
    float net quantized now with ``quant`` (:class:`~src.engine.sections.Quantization`;
    ``calibration`` = ``(seconds, patch count)``). Used by evaluation and by QAT."""
    options = model.option_dict()
    ckpt = open_checkpoint(ckpt)
    fp_net, q_net, meta = load_float_and_quantized(model.model, model.variant, model.scale, ckpt, options)
    if q_net is not None:
        qcfg, recorded = quant_config_of(meta), str(meta.get("quant_method", "?"))
        _refuse_other_quantization(quant, qcfg, recorded, ckpt.path)
        return fp_net, q_net, qcfg, recorded, None
    q_net, _ = load_for_inference(model.model, model.variant, model.scale, ckpt, options)
    if quant.recipe_note:
        log(quant.recipe_note)
    start = time.time()
    patches = calibration_patches_for(quant, model.scale, fp_net)
    qcfg = with_deploy_sites(quant.qcfg, fp_net, patches, log)
    quantize(fp_net, qcfg, patches, quant.calib, quant.pac, qnet=q_net, log=log, recon=quant.recon)
    return fp_net, q_net, qcfg, quant.method, (time.time() - start, len(patches))


def _refuse_other_quantization(quant, qcfg, recorded, ckpt):
    """A calibrated checkpoint is used as it is: asking for another method or other bits, or to save a
    calibration that is not made, would otherwise report the checkpoint's own result under the asked
    label (and write nothing). ValueError naming both."""
    if not quant.method:
        return
    asked = (quant.method, quant.qcfg.w_bit, quant.qcfg.a_bit)
    if asked != (recorded, qcfg.w_bit, qcfg.a_bit):
        raise UserError(f"--pre_trained {ckpt} is already calibrated ({recorded} W{qcfg.w_bit}A{qcfg.a_bit}), so "
                         f"--quant_method {asked[0]} --w_bit {asked[1]} --a_bit {asked[2]} cannot be applied to it; "
                         "pass the float checkpoint to calibrate anew, or drop the quantization options to evaluate "
                         "it as it is")
    if quant.save_quant_ckpt:
        raise UserError(f"--pre_trained {ckpt} is already calibrated ({recorded} W{qcfg.w_bit}A{qcfg.a_bit}): nothing "
                         "is calibrated now, so --save_quant_ckpt would write nothing; drop it (or pass the float "
                         "checkpoint)")


def with_deploy_sites(qcfg, fp_net, patches, log):
    """``qcfg`` with the deployment sites of ``fp_net`` (found on its mobile graph at the shape of one of
    ``patches``) when its placement is 'deploy'; a network whose file arithmetic the simulation cannot
    express falls back to PTQ4SR's placement, said in one line."""
    if qcfg.placement != "deploy":
        return qcfg
    try:
        sites = deploy_sites(fp_net, patches[:1])
    except DeployUnsupported as exc:
        log(f"placement: ptq4sr (the full-integer file of this network cannot be simulated: {exc}); "
            "the PSNR reported is not an int8 file's")
        return replace(qcfg, placement="ptq4sr", sites=[])
    log(f"placement: deploy ({len(sites)} tensors rounded as the int8 file rounds them, besides conv inputs "
        "and weights): the PSNR reported is the int8 TFLite / mobile ONNX file's")
    return replace(qcfg, sites=[site.as_list() for site in sites])


def build_quantized(model, quant, ckpt, log):
    """(fp_net, q_net, info) of ``model`` (:class:`~src.models.choice.ModelChoice`) from ``ckpt`` (a path
    or a :class:`~src.weights.checkpoint.CheckpointFile`): a calibrated checkpoint is used as is; otherwise
    calibrate now as ``quant`` (:class:`~src.engine.sections.Quantization`) says, and write the result to
    ``save_quant_ckpt`` if given.

    Raises ``SameFileError`` before any work when ``--save_quant_ckpt`` is the ``--pre_trained`` file.
    """
    refuse_same_file(getattr(ckpt, "path", ckpt), quant.save_target, "--save_quant_ckpt", "--pre_trained")
    fp_net, q_net, qcfg, method, calibration = load_or_calibrate(model, quant, ckpt, log)
    if calibration is None:
        return fp_net, q_net, {"method": method, "w_bit": qcfg.w_bit, "a_bit": qcfg.a_bit,
                               "placement": qcfg.placement, "calibration_seconds": 0.0, "from_checkpoint": True}
    seconds, count = calibration
    log(f"calibrated {quant.method} W{qcfg.w_bit}A{qcfg.a_bit} on {count} patches from "
        f"{quant.images.path} in {seconds:.1f} s")
    if quant.save_quant_ckpt:
        meta_out = dict(model_meta(q_net), quant_config=qcfg.to_json(), quant_method=quant.method)
        save_checkpoint(q_net, quant.save_target, meta=meta_out)
        log(f"calibrated model written to {quant.save_quant_ckpt}")
    return fp_net, q_net, {"method": quant.method, "w_bit": qcfg.w_bit, "a_bit": qcfg.a_bit,
                           "placement": qcfg.placement, "calibration_seconds": round(seconds, 1), "from_checkpoint": False}
