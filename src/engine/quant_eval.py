"""Post-training quantization inside evaluation: calibrate, evaluate FP and quantized side by side."""
import os
import time

from src.engine.inference import SRPredictor
from src.quantlib.calib_data import batches_of, calibration_patches
from src.quantlib.calibrate import calibrate
from src.quantlib.convert import QuantConfig
from src.quantlib.equalize import equalize
from src.quantlib.pac import PaCConfig, pixel_aware_calibration
from src.utils.atomic import refuse_same_file
from src.weights.checkpoint import model_meta, save_checkpoint
from src.weights.loader import load_float_and_quantized, load_for_inference, quant_config_of


def quant_config_from(config):
    return QuantConfig(config.w_bit, config.a_bit, config.w_symmetric, config.int8_scope, config.fp_scope,
                       config.bit_table or {})


def pac_config_from(config):
    return PaCConfig(act_iters=config.pac_act_iters, weight_iters=config.pac_weight_iters,
                     act_lr=config.pac_act_lr, act_lr_min=config.pac_act_lr_min, weight_lr=config.pac_weight_lr,
                     weight_lr_min=config.pac_weight_lr_min, batch_size=config.pac_batch,
                     feature_weight=config.pac_feature_weight,
                     relative_features=bool(config.pac_relative_features),
                     loss=str(config.pac_loss), seed=config.calib_seed)


def calibrate_from_config(q_net, fp_net, config, method, qcfg, calib_path, log):
    """Convert and calibrate ``q_net`` with ``method`` on ``calib_num`` patches from ``calib_path``
    (then PaC against ``fp_net`` for ``dbdc_pac``); returns the number of patches used.
    With ``equalize``, both float models are first equalised with the same scales (exact in float)."""
    patches = calibration_patches(calib_path, config.calib_num, config.scale, config.pac_hr_patch, config.calib_seed,
                                  int(getattr(fp_net, "n_colors", 3)))
    batches = batches_of(patches, int(config.calib_batch))
    if config.equalize:
        scales = equalize(fp_net, batches, others=(q_net,))
        log(f"equalised the activation ranges of {len(scales)} conv pairs")
    calibrate(q_net, batches, method, qcfg, config.percentile, config.dbdc_p)
    if method == "dbdc_pac":
        pixel_aware_calibration(q_net, fp_net, patches, pac_config_from(config), log=log)
    return len(patches)


def build_quantized(config, ckpt, options, resolve, log):
    """(fp_net, q_net, info): a calibrated checkpoint is used as is; otherwise calibrate now.

    Raises ``SameFileError`` before any work when ``--save_quant_ckpt`` is the ``--pre_trained`` file.
    """
    target = config.save_quant_ckpt
    if target and not os.path.isabs(target):
        target = resolve(target)
    refuse_same_file(ckpt, target, "--save_quant_ckpt", "--pre_trained")
    fp_net, q_net, meta = load_float_and_quantized(config.model, config.variant, config.scale, ckpt, options)
    if q_net is not None:
        qcfg = quant_config_of(meta)
        return fp_net, q_net, {"method": str(meta.get("quant_method", "?")), "w_bit": qcfg.w_bit,
                               "a_bit": qcfg.a_bit, "calibration_seconds": 0.0, "from_checkpoint": True}
    qcfg = quant_config_from(config)
    q_net, _ = load_for_inference(config.model, config.variant, config.scale, ckpt, options)
    start = time.time()
    count = calibrate_from_config(q_net, fp_net, config, config.quant_method, qcfg, resolve(config.calib_path), log)
    seconds = time.time() - start
    log(f"calibrated {config.quant_method} W{qcfg.w_bit}A{qcfg.a_bit} on {count} patches from "
        f"{config.calib_path} in {seconds:.1f} s")
    q_net.model_name, q_net.variant, q_net.scale = fp_net.model_name, fp_net.variant, fp_net.scale
    q_net.form, q_net.options = "deploy", getattr(fp_net, "options", {})
    if config.save_quant_ckpt:
        meta_out = dict(model_meta(q_net), quant_config=qcfg.to_json(), quant_method=config.quant_method)
        save_checkpoint(q_net, target, meta=meta_out)
        log(f"calibrated model written to {config.save_quant_ckpt}")
    return fp_net, q_net, {"method": config.quant_method, "w_bit": qcfg.w_bit, "a_bit": qcfg.a_bit,
                           "calibration_seconds": round(seconds, 1), "from_checkpoint": False}


def predictor_for(net, config):
    return SRPredictor(net, config.scale, config.tile_size, config.tile_overlap, config.self_ensemble,
                       config.max_tile_mem_gb)


def format_side_by_side(fp_results, q_results, label):
    lines = [f"{'dataset':<22}{'FP PSNR':>9}{'FP SSIM':>9}{label + ' PSNR':>{max(14, len(label) + 6)}}"
             f"{'SSIM':>8}{'drop (dB)':>11}"]
    width = max(14, len(label) + 6)
    for name, q in q_results.items():
        fp = fp_results[name]
        lines.append(f"{name:<22}{fp['psnr']:>9.2f}{fp['ssim']:>9.4f}{q['psnr']:>{width}.2f}{q['ssim']:>8.4f}"
                     f"{fp['psnr'] - q['psnr']:>11.3f}")
    return "\n".join(lines)
