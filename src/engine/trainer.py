"""Single-process training loop: L1 loss, Adam, cosine learning rate, periodic validation.

The step is one compiled graph (:class:`~src.engine.train_step.TrainStep`): it can
freeze the ETDS residual stream for the first ``freeze_residual_steps``, skips
updates whose loss or gradients are not finite (stopping after ``max_bad_steps``
in a row), and keeps an EMA of the weights when ``ema_decay`` > 0. Validation
runs the deploy form of the evaluation weights (EMA if enabled) through the
evaluation engine, so reported PSNR equals what eval.py prints. The best and the
last checkpoint (evaluation weights) are written atomically with model
metadata; a CSV log of loss and validation PSNR is kept beside them.
"""
import csv
import math
import os
import time

import numpy as np
import mindspore as ms
from mindspore import Tensor, nn

from src.data.eval_sets import resolve_eval_set
from src.data.train_set import PatchSampler
from src.engine.evaluator import evaluate_set, resolve_path
from src.engine.inference import SRPredictor
from src.engine.losses import SRLoss
from src.engine.train_step import TrainStep
from src.models.registry import config_options, create_model, has_training_form, to_deploy
from src.weights.checkpoint import load_into, model_meta, save_checkpoint
from src.weights.transfer import transfer_weights


def cosine_lr(base_lr, min_lr, total_steps, warmup_steps=0):
    lrs = []
    for step in range(total_steps):
        if step < warmup_steps:
            lrs.append(base_lr * (step + 1) / warmup_steps)
        else:
            t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
            lrs.append(min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * t)))
    return lrs


def _validate(net, config, eval_sets):
    """PSNR of the deploy form of ``net`` (what eval.py would report)."""
    predictor = SRPredictor(to_deploy(net), config.scale, tile_size=-1)
    return {s.name: evaluate_set(predictor, s, config)["psnr"] for s in eval_sets}


def _evaluation_net(net, step_cell, config, form):
    """``net`` itself, or (with EMA) a copy of it holding the EMA weights."""
    ema = step_cell.ema_weights()
    if not ema:
        return net
    clone = create_model(config.model, config.variant, config.scale, form=form, **config_options(config))
    values = {p.name: p.data.asnumpy() for p in net.get_parameters()}
    values.update(ema)
    ms.load_param_into_net(clone, {k: ms.Parameter(Tensor(v), name=k) for k, v in values.items()})
    return clone


def _build_qat_net(config, log):
    """Deploy form with fake quantizers, initialised from a float (or calibrated) checkpoint."""
    from src.engine.quant_eval import calibrate_from_config, quant_config_from  # pylint: disable=import-outside-toplevel
    from src.weights.loader import load_float_and_quantized, load_for_inference, quant_config_of  # pylint: disable=import-outside-toplevel
    if not config.pre_trained:
        raise ValueError("--qat True needs --pre_trained: the float (or calibrated) checkpoint to fine-tune")
    if config.get("ema_decay", 0.0) > 0:
        raise ValueError("--qat True does not support --ema_decay yet; set --ema_decay 0")
    ckpt = resolve_path(config, config.pre_trained)
    options = config_options(config)
    fp_net, net, meta = load_float_and_quantized(config.model, config.variant, config.scale, ckpt, options)
    if net is not None:
        qcfg = quant_config_of(meta)
        log(f"QAT from calibrated checkpoint {ckpt} (W{qcfg.w_bit}A{qcfg.a_bit})")
    else:
        method = config.quant_method or "dbdc"
        qcfg = quant_config_from(config)
        net, _ = load_for_inference(config.model, config.variant, config.scale, ckpt, options)
        calibrate_from_config(net, fp_net, config, method, qcfg, resolve_path(config, config.calib_path), log)
        log(f"QAT initialised by {method} calibration, W{qcfg.w_bit}A{qcfg.a_bit}")
    net.model_name, net.variant, net.form = config.model, net.variant, "deploy"
    net.options = options
    net.quant_meta = {"quant_config": qcfg.to_json(), "quant_method": "qat"}
    return net


def train(config, log=print):
    ms.set_seed(config.seed)
    if config.get("qat"):
        form = "deploy"
        net = _build_qat_net(config, log)
    else:
        form = "train" if has_training_form(config.model) else "deploy"
        net = create_model(config.model, config.variant, config.scale, form=form, **config_options(config))
    if config.pre_trained and not config.get("qat"):
        load_into(net, config.pre_trained)
    elif config.get("init_from") and not config.get("qat"):
        copied, skipped = transfer_weights(net, resolve_path(config, config.init_from))
        log(f"initialised from {config.init_from}: copied {len(copied)} tensors, kept {len(skipped)} "
            f"of the model's own ({', '.join(skipped[:4])}{', ...' if len(skipped) > 4 else ''})")
    if hasattr(net, "train_outputs"):
        net.train_outputs = True  # ETDS: (out, r_out) for the residual loss term
    sampler = PatchSampler(resolve_path(config, config.train_path), config.scale, config.patch_size, config.seed,
                           n_colors=getattr(net, "n_colors", 3))
    log(f"training {config.model}-{net.variant} x{config.scale} on {len(sampler)} images "
        f"({len(sampler.skipped)} too small), batch {config.batch_size}, LR patch {config.patch_size}, "
        f"{config.total_steps} steps")
    val_root = resolve_path(config, config.val_data_path)
    eval_sets = [resolve_eval_set(val_root, n, config.scale) for n in config.val_datasets]
    lrs = cosine_lr(config.lr, config.min_lr, config.total_steps, config.warmup_steps)
    opt = nn.Adam(net.trainable_params(), learning_rate=lrs, beta1=0.9, beta2=0.999)
    freeze_steps = int(config.get("freeze_residual_steps", 0))
    frozen = net.residual_parameters() if freeze_steps > 0 and hasattr(net, "residual_parameters") else []
    if freeze_steps > 0:
        log(f"freezing {len(frozen)} residual-stream tensors for the first {freeze_steps} steps")
    step_cell = TrainStep(SRLoss(net, config.get("residual_loss_weight", 0.5)), opt, frozen,
                          float(config.get("ema_decay", 0.0)))
    step_cell.set_train(True)
    max_bad = int(config.get("max_bad_steps", 10))
    bad_run = 0
    out_dir = resolve_path(config, config.ckpt_dir)
    os.makedirs(out_dir, exist_ok=True)
    stem = f"{config.model}_{net.variant}_x{config.scale}" + ("_qat" if config.get("qat") else "")
    log_path = os.path.join(out_dir, f"{stem}_train_log.csv")
    best, losses, start = -1.0, [], time.time()
    with open(log_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["step", "loss", "lr", "seconds"] + [f"psnr_{s.name}" for s in eval_sets])
        for step in range(1, config.total_steps + 1):
            lr_b, hr_b = sampler.batch(config.batch_size)
            freeze = Tensor(1.0 if step <= freeze_steps else 0.0, ms.float32)
            loss, finite = step_cell(Tensor(lr_b), Tensor(hr_b), freeze)
            if not bool(finite.asnumpy()):
                bad_run += 1
                if bad_run >= max_bad:
                    raise FloatingPointError(
                        f"{bad_run} consecutive steps with a non-finite loss or gradient (last: step {step}), "
                        "updates skipped; lower --lr or check the training images")
                continue
            bad_run = 0
            losses.append(float(loss.asnumpy()))
            if step % config.val_every == 0 or step == config.total_steps:
                eval_net = _evaluation_net(net, step_cell, config, form)
                scores = _validate(eval_net, config, eval_sets)
                step_cell.set_train(True)
                elapsed = time.time() - start
                mean_loss = float(np.mean(losses[-config.val_every:])) if losses else float("nan")
                writer.writerow([step, f"{mean_loss:.6f}", f"{lrs[step - 1]:.3e}", f"{elapsed:.0f}"]
                                + [f"{v:.4f}" for v in scores.values()])
                fh.flush()
                first = next(iter(scores.values()))
                eval_net.model_name, eval_net.variant, eval_net.form = net.model_name, net.variant, net.form
                eval_net.options = net.options
                meta = dict(model_meta(net), **getattr(net, "quant_meta", {}))
                save_checkpoint(eval_net, os.path.join(out_dir, f"{stem}_last.ckpt"), meta=meta)
                if first > best:
                    best = first
                    save_checkpoint(eval_net, os.path.join(out_dir, f"{stem}_best.ckpt"), meta=meta)
                eta = elapsed / step * (config.total_steps - step)
                log(f"step {step}/{config.total_steps} loss {mean_loss:.4f} lr {lrs[step - 1]:.2e} "
                    + " ".join(f"{k} {v:.2f}" for k, v in scores.items())
                    + f" | {step / elapsed:.2f} it/s, ETA {eta / 60:.0f} min")
    return best
