"""Single-process training loop: L1 loss, Adam, cosine learning rate, periodic validation.

The step is one compiled graph (``nn.TrainOneStepCell``). Validation uses the
evaluation engine, so reported PSNR equals what eval.py prints. The best and
the last checkpoint are written atomically with model metadata; a CSV log of
loss and validation PSNR is kept beside them.
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
    """PSNR of the deploy form of the current weights (what eval.py would report)."""
    predictor = SRPredictor(to_deploy(net), config.scale, tile_size=-1)
    scores = {s.name: evaluate_set(predictor, s, config)["psnr"] for s in eval_sets}
    net.set_train(True)
    return scores


def train(config, log=print):
    ms.set_seed(config.seed)
    form = "train" if has_training_form(config.model) else "deploy"
    net = create_model(config.model, config.variant, config.scale, form=form, **config_options(config))
    if config.pre_trained:
        load_into(net, config.pre_trained)
    elif config.get("init_from"):
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
    step_cell = nn.TrainOneStepCell(SRLoss(net, config.get("residual_loss_weight", 0.5)), opt)
    step_cell.set_train(True)
    out_dir = resolve_path(config, config.ckpt_dir)
    os.makedirs(out_dir, exist_ok=True)
    stem = f"{config.model}_{net.variant}_x{config.scale}"
    log_path = os.path.join(out_dir, f"{stem}_train_log.csv")
    best, losses, start = -1.0, [], time.time()
    with open(log_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["step", "loss", "lr", "seconds"] + [f"psnr_{s.name}" for s in eval_sets])
        for step in range(1, config.total_steps + 1):
            lr_b, hr_b = sampler.batch(config.batch_size)
            loss = float(step_cell(Tensor(lr_b), Tensor(hr_b)).asnumpy())
            if not np.isfinite(loss):
                raise FloatingPointError(f"loss became {loss} at step {step}; lower --lr")
            losses.append(loss)
            if step % config.val_every == 0 or step == config.total_steps:
                scores = _validate(net, config, eval_sets)
                elapsed = time.time() - start
                mean_loss = float(np.mean(losses[-config.val_every:]))
                writer.writerow([step, f"{mean_loss:.6f}", f"{lrs[step - 1]:.3e}", f"{elapsed:.0f}"]
                                + [f"{v:.4f}" for v in scores.values()])
                fh.flush()
                first = next(iter(scores.values()))
                save_checkpoint(net, os.path.join(out_dir, f"{stem}_last.ckpt"), meta=model_meta(net))
                if first > best:
                    best = first
                    save_checkpoint(net, os.path.join(out_dir, f"{stem}_best.ckpt"), meta=model_meta(net))
                eta = elapsed / step * (config.total_steps - step)
                log(f"step {step}/{config.total_steps} loss {mean_loss:.4f} lr {lrs[step - 1]:.2e} "
                    + " ".join(f"{k} {v:.2f}" for k, v in scores.items())
                    + f" | {step / elapsed:.2f} it/s, ETA {eta / 60:.0f} min")
    return best
