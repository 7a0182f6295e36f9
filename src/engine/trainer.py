"""Training loop: one process, or one data-parallel worker of an ``msrun`` job.

The step is one compiled graph (:class:`~src.engine.train_step.TrainStep`); data
come from a ``GeneratorDataset`` whose sample stream is a pure function of the
seed and the step (:mod:`src.data.train_set`), so a resumed run sees exactly the
batches an uninterrupted run would. Rank 0 validates every ``val_every`` steps
through the evaluation engine (the PSNR eval.py would print), keeps the best and
the last evaluation weights, writes the resumable state every ``save_every``
steps (the newest ``keep_last_ckpt`` kept), and writes the logs; every write is
atomic. ``--resume True`` continues from the newest state in ``ckpt_dir``.
"""
import os
import time

import numpy as np
import mindspore as ms
from mindspore import Tensor, nn

from src.data.eval_sets import resolve_eval_set
from src.data.train_set import TrainPairs, create_train_dataset
from src.engine.distributed import init_distributed, parameter_digest
from src.engine.evaluator import evaluate_set, resolve_path
from src.engine.inference import SRPredictor
from src.engine.losses import SRLoss
from src.engine.schedules import lr_schedule
from src.engine.train_log import TrainLogger
from src.engine.train_state import load_latest_state, save_state
from src.engine.train_step import TrainStep
from src.models.registry import config_options, create_model, has_training_form, to_deploy
from src.weights.checkpoint import load_into, model_meta, save_checkpoint
from src.weights.transfer import transfer_weights

AMP_LEVELS = ("O0", "O1", "O2", "O3")


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
    for attr in ("model_name", "variant", "form", "options", "quant_meta"):
        if hasattr(net, attr):
            setattr(clone, attr, getattr(net, attr))
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


def build_network(config, log):
    """(net, form): the training form (or the fake-quant deploy form for QAT), initialised as asked."""
    if config.get("qat"):
        return _build_qat_net(config, log), "deploy"
    form = "train" if has_training_form(config.model) else "deploy"
    net = create_model(config.model, config.variant, config.scale, form=form, **config_options(config))
    if config.pre_trained:
        load_into(net, resolve_path(config, config.pre_trained))
    elif config.get("init_from"):
        copied, skipped = transfer_weights(net, resolve_path(config, config.init_from))
        log(f"initialised from {config.init_from}: copied {len(copied)} tensors, kept {len(skipped)} "
            f"of the model's own ({', '.join(skipped[:4])}{', ...' if len(skipped) > 4 else ''})")
    if hasattr(net, "train_outputs"):
        net.train_outputs = True  # ETDS: (out, r_out) for the residual loss term
    return net, form


def mixed_precision(net, config, log):
    """Apply ``amp_level``; returns the loss-scaling mode. CPU trains in float32 (O0) with a notice."""
    level = str(config.get("amp_level", "O0")).upper()
    if level not in AMP_LEVELS:
        raise ValueError(f"amp_level must be one of {AMP_LEVELS}, not '{level}'")
    scale = str(config.get("loss_scale", "auto")).lower()
    if level != "O0" and str(config.device_target).upper() == "CPU":
        log(f"notice: amp_level {level} is not available on CPU (MindSpore's CPU Conv2D is float32-only); "
            "training in float32 (O0)")
        level = "O0"
    if level != "O0":
        ms.amp.auto_mixed_precision(net, level)
    if scale == "auto":
        return "dynamic" if level != "O0" else "none"
    return scale


def _optimizer(net, config, lrs):
    return nn.Adam(net.trainable_params(), learning_rate=lrs, beta1=float(config.get("beta1", 0.9)),
                   beta2=float(config.get("beta2", 0.999)), use_amsgrad=bool(config.get("amsgrad", False)),
                   weight_decay=float(config.get("weight_decay", 0.0)))


class _Progress:
    """Running loss, speed and ETA between log lines."""

    def __init__(self, start_step, total_steps):
        self.total, self.start_step = total_steps, start_step
        self.t0, self.losses = time.time(), []
        self.scores = ""

    def add(self, loss):
        self.losses.append(loss)

    def mean_loss(self, last):
        return float(np.mean(self.losses[-last:])) if self.losses else float("nan")

    def speed(self, step):
        elapsed = time.time() - self.t0
        rate = (step - self.start_step) / max(elapsed, 1e-9)
        return rate, (self.total - step) / max(rate, 1e-9), elapsed


def train(config, log=print):
    rank, world = init_distributed()
    main = rank == 0
    ms.set_seed(config.seed)
    main_log = log if main else (lambda *_: None)
    net, form = build_network(config, main_log)
    loss_scale = mixed_precision(net, config, main_log)
    n_colors = getattr(net, "n_colors", 3)
    pairs = TrainPairs(resolve_path(config, config.train_path), config.scale, config.patch_size,
                       cache_dir=resolve_path(config, config.cache_dir),
                       max_memory_gb=float(config.get("train_cache_gb", 4.0)))
    val_root = resolve_path(config, config.val_data_path)
    eval_sets = [resolve_eval_set(val_root, n, config.scale) for n in config.val_datasets] if main else []
    lrs = lr_schedule(config)
    freeze_steps = int(config.get("freeze_residual_steps", 0))
    frozen = net.residual_parameters() if freeze_steps > 0 and hasattr(net, "residual_parameters") else []
    step_cell = TrainStep(SRLoss(net, config.get("residual_loss_weight", 0.5)), _optimizer(net, config, lrs),
                          frozen, float(config.get("ema_decay", 0.0)), float(config.get("clip_grad_norm", 0.0)),
                          loss_scale, float(config.get("loss_scale_value", 65536.0)), reduce_grads=world > 1)
    step_cell.set_train(True)

    out_dir = resolve_path(config, config.ckpt_dir)
    os.makedirs(out_dir, exist_ok=True)
    stem = f"{config.model}_{net.variant}_x{config.scale}" + ("_qat" if config.get("qat") else "")
    start_step, best = 0, -1.0
    if config.get("resume"):
        progress = load_latest_state(step_cell, out_dir, stem, log)
        if progress is None:
            log(f"--resume True: no training state for {stem} in {out_dir}; starting from step 0")
        else:
            if int(progress.get("seed", config.seed)) != int(config.seed) or \
                    int(progress.get("global_batch", 0)) not in (0, config.batch_size * world):
                raise ValueError(f"{progress['path']} was written with seed {progress.get('seed')} and global batch "
                                 f"{progress.get('global_batch')}; resume with the same --seed, --batch_size and "
                                 "number of workers")
            start_step, best = int(progress["step"]), float(progress.get("best", -1.0))
    if start_step >= config.total_steps:
        log(f"nothing to do: the state in {out_dir} is already at step {start_step} of {config.total_steps}")
        return best
    logger = TrainLogger(out_dir, stem, [s.name for s in eval_sets], start_step,
                         bool(config.get("tensorboard", False)), enabled=main, echo=log)
    logger.line(f"{'resumed at step ' + str(start_step) + ': ' if start_step else ''}training {config.model}-"
                f"{net.variant} x{config.scale} on {len(pairs)} images ({pairs.source}; {len(pairs.skipped)} "
                f"smaller than a patch, {len(pairs.unreadable)} unreadable; "
                f"{'in memory' if pairs.in_memory else 'partly read from disk'}), batch {config.batch_size} x "
                f"{world} worker(s), LR patch {config.patch_size}, {config.total_steps} steps, "
                f"{config.get('lr_scheduler', 'cosine')} lr {config.lr:g}, loss scale {loss_scale}")
    if freeze_steps > 0:
        logger.line(f"freezing {len(frozen)} residual-stream tensors for the first {freeze_steps} steps")
    dataset, source = create_train_dataset(pairs, config, n_colors, start_step, rank, world)
    log_every = max(1, int(config.get("log_every", 100)))
    save_every = int(config.get("save_every", 0)) or config.val_every
    keep = int(config.get("keep_last_ckpt", 3))
    max_bad, bad_run = int(config.get("max_bad_steps", 10)), 0
    progress = _Progress(start_step, config.total_steps)
    on = Tensor(1.0, ms.float32)
    off = Tensor(0.0, ms.float32)
    step = start_step
    for lr_b, hr_b in dataset.create_tuple_iterator(num_epochs=1):
        step += 1
        loss, finite = step_cell(lr_b, hr_b, on if step <= freeze_steps else off)
        if not bool(finite.asnumpy()):
            bad_run += 1
            if bad_run >= max_bad:
                raise FloatingPointError(
                    f"{bad_run} consecutive steps with a non-finite loss or gradient (last: step {step}), "
                    "updates skipped; lower --lr, set --clip_grad_norm, or check the training images")
        else:
            bad_run = 0
            progress.add(float(loss.asnumpy()))
        if step % log_every == 0 and main:
            rate, eta, _ = progress.speed(step)
            epoch = step * config.batch_size * world / max(1, len(source))
            mean_loss = progress.mean_loss(log_every)
            logger.line(f"step {step}/{config.total_steps} epoch {epoch:.1f} loss {mean_loss:.4f} "
                        f"lr {lrs[step - 1]:.2e}{progress.scores} | {rate:.2f} it/s, ETA {eta / 60:.0f} min")
            logger.scalars(step, {"train/loss": mean_loss, "train/lr": lrs[step - 1]})
        last = step == config.total_steps
        if main and (step % config.val_every == 0 or last):
            best = _validate_and_keep(net, step_cell, config, form, eval_sets, out_dir, stem, best, logger,
                                      progress, step, lrs)
        if main and (step % save_every == 0 or last):
            save_state(step_cell, out_dir, stem, step,
                       {"best": best, "seed": int(config.seed), "global_batch": config.batch_size * world,
                        "samples": step * config.batch_size * world}, keep)
    logger.close()
    log(f"rank {rank}/{world} finished at step {step}; parameter digest {parameter_digest(net)}")
    return best


def _validate_and_keep(net, step_cell, config, form, eval_sets, out_dir, stem, best, logger, progress, step, lrs):
    """Validate the evaluation weights; write the last (and, if better, best) checkpoint."""
    eval_net = _evaluation_net(net, step_cell, config, form)
    scores = _validate(eval_net, config, eval_sets)
    step_cell.set_train(True)
    rate, eta, elapsed = progress.speed(step)
    mean_loss = progress.mean_loss(config.val_every)
    logger.validation_row(step, mean_loss, lrs[step - 1], elapsed, scores)
    meta = dict(model_meta(net), **getattr(net, "quant_meta", {}))
    save_checkpoint(eval_net, os.path.join(out_dir, f"{stem}_last.ckpt"), meta=meta)
    scores_text = " ".join(f"{k} {v:.2f}" for k, v in scores.items())
    progress.scores = " | last val " + scores_text
    first = next(iter(scores.values()))
    if first > best:
        best = first
        save_checkpoint(eval_net, os.path.join(out_dir, f"{stem}_best.ckpt"), meta=meta)
    logger.line(f"step {step}/{config.total_steps} validation {scores_text}"
                f" (best {best:.2f}) loss {mean_loss:.4f} | {rate:.2f} it/s, ETA {eta / 60:.0f} min")
    return best
