"""Training loop: one process, or one data-parallel worker of an ``msrun`` job.

The step is one compiled graph (:class:`~src.engine.train_step.TrainStep`); data
come from a ``GeneratorDataset`` whose sample stream is a pure function of the
seed and the step (:mod:`src.data.train_set`), so a resumed run sees exactly the
batches an uninterrupted run would. Rank 0 validates every ``val_every`` steps
through the evaluation engine (the PSNR eval.py would print), keeps the best and
the last evaluation weights, writes the resumable state every ``save_every``
steps (the newest ``keep_last_ckpt`` kept), and writes the logs; every write is
atomic, and no checkpoint or state is written while a tensor in it is not finite.

``--resume True`` continues from the newest state in ``ckpt_dir`` if it belongs
to the same run (:func:`~src.engine.train_state.run_identity`; otherwise it stops
naming the options that differ) and stops, changing nothing, when no state there
can be read. A new run (``--resume False``) into a folder holding an earlier run of
the same model stops instead of replacing its states, checkpoints and CSV, unless
``--overwrite True``.

Reproducibility on CPU: with a fixed seed, two runs give bit-identical weights
(and a resumed run the weights of the uninterrupted one). The sample stream does
not depend on the number of loader threads; the two sources of run-to-run
differences found in MindSpore 2.10's CPU kernels are avoided: the PReLU slope
gradient (``PReLUGrad`` accumulates a per-channel sum from several threads in a
varying order; replaced by :class:`~src.engine.train_step.DeterministicPReLU`) and
the gradient of ``ops.pad`` in a compiled graph (wrong from the second call on; the
ECBSR training form uses the ``Pad`` primitive).
"""
import os
import time

import mindspore as ms
from mindspore import Tensor, nn

from src.data.eval_sets import resolve_eval_set
from src.data.train_set import TrainPairs, create_train_dataset
from src.engine.distributed import init_distributed, parameter_digest
from src.engine.evaluator import evaluate_set
from src.paths import resolve_path
from src.engine.inference import SRPredictor
from src.engine.losses import SRLoss
from src.engine.schedules import lr_schedule
from src.engine.sections import quantization_of, training_sections
from src.engine.train_log import LossInterval, TrainLogger
from src.engine.train_state import (check_finite, file_digest, images_fingerprint, list_states, load_latest_state,
                                    run_identity, save_state, state_path)
from src.engine.train_step import TrainStep, use_deterministic_prelu
from src.models.choice import model_choice
from src.models.registry import create_model, has_training_form, to_deploy
from src.utils.atomic import refuse_same_file
from src.utils.run_lock import hold_folder
from src.utils.stop_signals import StopRequest
from src.errors import Interrupted, UserError
from src.weights.checkpoint import load_into, model_meta, save_checkpoint
from src.weights.transfer import transfer_weights
from src.engine.quant_eval import load_or_calibrate

AMP_LEVELS = ("O0", "O1", "O2", "O3")


def _validate(net, protocol, eval_sets):
    """PSNR of the deploy form of ``net`` (what eval.py would report) with ``protocol`` (:class:`~src.engine.sections.EvalProtocol`)."""
    predictor = SRPredictor(to_deploy(net), protocol.scale, tile_size=-1)
    return {s.name: evaluate_set(predictor, s, protocol)["psnr"] for s in eval_sets}


def _evaluation_net(net, step_cell):
    """``net`` itself, or (with EMA) a copy of it, built from its spec, holding the EMA weights."""
    ema = step_cell.ema_weights()
    if not ema:
        return net
    spec = net.spec
    clone = create_model(spec.model, spec.variant, spec.scale, form=spec.form, **spec.options)
    values = {p.name: p.data.asnumpy() for p in net.get_parameters()}
    values.update(ema)
    ms.load_param_into_net(clone, {k: ms.Parameter(Tensor(v), name=k) for k, v in values.items()})
    return clone


def _build_qat_net(config, log):
    """(net, quant_meta): the deploy form with fake quantizers, initialised from a float (or calibrated)
    checkpoint, and the quantization entries its checkpoints record."""
    if not config.pre_trained:
        raise UserError("--qat True needs --pre_trained: the float (or calibrated) checkpoint to fine-tune")
    if config.ema_decay > 0:
        raise UserError("--qat True does not support --ema_decay yet; set --ema_decay 0")
    ckpt = resolve_path(config, config.pre_trained)
    method = config.quant_method or "dbdc"
    _, net, qcfg, _, calibration = load_or_calibrate(model_choice(config), quantization_of(config, method), ckpt, log)
    if calibration is None:
        log(f"QAT from calibrated checkpoint {ckpt} (W{qcfg.w_bit}A{qcfg.a_bit})")
    else:
        log(f"QAT initialised by {method} calibration, W{qcfg.w_bit}A{qcfg.a_bit}")
    return net, {"quant_config": qcfg.to_json(), "quant_method": "qat"}


def build_network(config, log):
    """(net, form, quant_meta): the training form (or the fake-quant deploy form for QAT), initialised as
    asked, and the quantization entries its checkpoints record ({} for a float run)."""
    if config.qat:
        net, quant_meta = _build_qat_net(config, log)
        return net, "deploy", quant_meta
    form = "train" if has_training_form(config.model) else "deploy"
    net = create_model(config.model, config.variant, config.scale, form=form, **model_choice(config).option_dict())
    if config.pre_trained:
        load_into(net, resolve_path(config, config.pre_trained))
    elif config.init_from:
        copied, skipped = transfer_weights(net, resolve_path(config, config.init_from))
        log(f"initialised from {config.init_from}: copied {len(copied)} tensors, kept {len(skipped)} "
            f"of the model's own ({', '.join(skipped[:4])}{', ...' if len(skipped) > 4 else ''})")
    if net.has_train_outputs:
        net.train_outputs = True  # ETDS: (out, r_out) for the residual loss term
    return net, form, {}


def mixed_precision(net, optim, device_target, log):
    """Apply ``optim.amp_level``; returns the loss-scaling mode. CPU trains in float32 (O0) with a notice."""
    level = str(optim.amp_level).upper()
    if level not in AMP_LEVELS:
        raise UserError(f"amp_level must be one of {AMP_LEVELS}, not '{level}'")
    scale = str(optim.loss_scale).lower()
    if level != "O0" and str(device_target).upper() == "CPU":
        log(f"notice: amp_level {level} is not available on CPU (MindSpore's CPU Conv2D is float32-only); "
            "training in float32 (O0)")
        level = "O0"
    if level != "O0":
        ms.amp.auto_mixed_precision(net, level)
    if scale == "auto":
        return "dynamic" if level != "O0" else "none"
    return scale


def _optimizer(net, optim, lrs):
    return nn.Adam(net.trainable_params(), learning_rate=lrs, beta1=float(optim.beta1), beta2=float(optim.beta2),
                   use_amsgrad=bool(optim.amsgrad), weight_decay=float(optim.weight_decay))


class _Progress:
    """Loss intervals (since the last log line / validation row), speed, ETA and training seconds.

    ``carried``: the ``"intervals"`` and ``"seconds"`` a training state recorded, so a
    resumed run reports the same interval means as an uninterrupted one.
    """

    def __init__(self, start_step, total_steps, carried=None):
        carried = carried or {}
        self.total, self.start_step = total_steps, start_step
        self.best = float(carried.get("best", -1.0))
        self.t0 = time.time()
        self.seconds_before = float(carried.get("seconds", 0.0))
        intervals = carried.get("intervals") or {}
        self.log, self.val = LossInterval(intervals.get("log")), LossInterval(intervals.get("val"))
        self.scores = ""

    def add(self, loss):
        """One step: its loss, or None when it was skipped."""
        self.log.add(loss)
        self.val.add(loss)

    def speed(self, step):
        """(steps/s in this process, seconds left, training seconds so far including earlier processes)."""
        elapsed = time.time() - self.t0
        rate = (step - self.start_step) / max(elapsed, 1e-9)
        return rate, (self.total - step) / max(rate, 1e-9), self.seconds_before + elapsed

    def state(self, step):
        """What a training state records to continue these reports exactly (and the best PSNR)."""
        return {"intervals": {"log": self.log.state(), "val": self.val.state()}, "seconds": self.speed(step)[2],
                "best": self.best}


def _identity(config, sections, net, form, pairs, world, quant_meta):
    """:func:`~src.engine.train_state.run_identity` of this run."""
    init = config.pre_trained or sections.run.init_from or ""
    uses = [name for name, present in (("residual_loss", net.has_train_outputs),
                                       ("freeze_residual", bool(net.residual_parameters()))) if present]
    quant = quant_meta.get("quant_config", "") if sections.run.qat else ""
    meta = dict(model_meta(net), form=form)
    meta.setdefault("n_colors", net.n_colors)
    return run_identity(sections, meta, world, images_fingerprint(pairs.paths, pairs.lr_paths),
                        file_digest(resolve_path(config, init) if init else ""), quant, uses)


def _run_files(out_dir, stem):
    """Files of an earlier run of ``stem`` in ``out_dir`` that a fresh run would replace or prune."""
    found = list_states(out_dir, stem)
    found += [p for p in (os.path.join(out_dir, f"{stem}_{k}.ckpt") for k in ("best", "last")) if os.path.isfile(p)]
    csv_path = os.path.join(out_dir, f"{stem}_train_log.csv")
    if os.path.isfile(csv_path):
        with open(csv_path, encoding="utf-8", errors="replace") as fh:
            if sum(1 for line in fh if line.strip()) > 1:  # rows beyond the header
                found.append(csv_path)
    return found


def _start_fresh(out_dir, stem, run, log, remove=True):
    """Refuse to start over a folder holding another run of ``stem``, unless ``--overwrite True``
    (then its files are removed where ``remove``: on rank 0 of a data-parallel run)."""
    found = _run_files(out_dir, stem)
    if not found:
        return
    names = ", ".join(os.path.basename(p) for p in found[:3]) + (", ..." if len(found) > 3 else "")
    if run.resume:
        raise UserError(f"--resume True: {out_dir} holds {len(found)} file(s) of an earlier {stem} run ({names}) "
                         "but no training state to continue from; start over there with --resume False "
                         "--overwrite True, or use a new --ckpt_dir")
    if not run.overwrite:
        raise UserError(f"{out_dir} holds {len(found)} file(s) of an earlier {stem} run ({names}) that a new run "
                         "would replace; continue it with --resume True, start over with --overwrite True, "
                         "or use a new --ckpt_dir")
    if not remove:
        return
    removed = [p for p in found if not p.endswith(".csv")]  # the CSV is rewritten with its header by the logger
    for path in removed:
        os.remove(path)
    log(f"--overwrite True: removed {len(removed)} file(s) of the earlier {stem} run in {out_dir} ({names})"
        + ("; its CSV history starts over" if len(removed) < len(found) else ""))


def train(config, log=print):
    """Train ``config.model`` as configured; returns the best validation PSNR (dB) of the first set.

    Raises ValueError / CheckpointError (user errors: a different run's state, a folder
    holding another run, a folder another live run is writing to (:class:`~src.utils.run_lock.FolderBusy`),
    unreadable states) and FloatingPointError (non-finite
    training that cannot continue); nothing already written is replaced then.
    """
    trainer = Trainer(config, log)
    if not trainer.main:  # rank 0 holds the folder for the whole data-parallel run
        return trainer.run()
    with hold_folder(trainer.out_dir, log=log):  # a second run into this folder is refused, not interleaved
        return trainer.run()


class Trainer:
    """One training process: built from the configuration, it resumes (or starts fresh), runs the
    step loop, and validates and checkpoints every ``val_every`` steps (rank 0).

    ``config`` holds the model identity and paths; the typed training sections
    (:func:`~src.engine.sections.training_sections`) are built once here.
    """

    def __init__(self, config, log=print):
        self.config, self.sections, self.log = config, training_sections(config), log
        self.rank, self.world = init_distributed()
        self.main = self.rank == 0
        self.main_log = log if self.main else (lambda *_: None)
        run = self.sections.run
        ms.set_seed(run.seed)
        if run.resume and run.overwrite:
            raise UserError("--resume True continues the run in --ckpt_dir and --overwrite True replaces it; "
                             "pass only one of them")
        self._build()
        self.out_dir = resolve_path(config, run.ckpt_dir)
        os.makedirs(self.out_dir, exist_ok=True)
        self.stem = f"{config.model}_{self.net.variant}_x{config.scale}" + ("_qat" if run.qat else "")
        for option, path in (("pre_trained", config.pre_trained), ("init_from", run.init_from)):
            for suffix in ("_best.ckpt", "_last.ckpt") if path else ():  # never replace the file it started from
                refuse_same_file(resolve_path(config, path), os.path.join(self.out_dir, self.stem + suffix),
                                 "--ckpt_dir", f"--{option}")
        self.logger = None

    def _build(self):
        """Network, training images, validation sets, schedule and the compiled step."""
        config, data, optim = self.config, self.sections.data, self.sections.optim
        self.net, self.form, self.quant_meta = build_network(config, self.main_log)
        if str(config.device_target).upper() == "CPU":
            use_deterministic_prelu(self.net)  # MindSpore's CPU PReLU gradient is not reproducible (see train_step)
        self.loss_scale = mixed_precision(self.net, optim, config.device_target, self.main_log)
        self.pairs = TrainPairs(resolve_path(config, data.train_path), config.scale, data.patch_size,
                                cache_dir=resolve_path(config, config.cache_dir), max_memory_gb=float(data.train_cache_gb))
        val_root = resolve_path(config, data.val_data_path)
        self.eval_sets = [resolve_eval_set(val_root, n, config.scale) for n in data.val_datasets] if self.main else []
        self.lrs = lr_schedule(self.sections.schedule)
        net, freeze_steps = self.net, int(optim.freeze_residual_steps)
        self.frozen = net.residual_parameters() if freeze_steps > 0 else []
        self.step_cell = TrainStep(SRLoss(net, optim.residual_loss_weight), _optimizer(net, optim, self.lrs),
                                   self.frozen, float(optim.ema_decay), float(optim.clip_grad_norm), self.loss_scale,
                                   float(optim.loss_scale_value), reduce_grads=self.world > 1)
        self.step_cell.set_train(True)
        # loss_scale as given: 'auto' resolves per device
        self.identity = _identity(config, self.sections, net, self.form, self.pairs, self.world, self.quant_meta)

    def resume(self):
        """The training state to continue from (``--resume True``), or None after checking that a fresh
        start replaces nothing it should not (:func:`_start_fresh`)."""
        run, saved = self.sections.run, None
        if run.resume:
            saved = load_latest_state(self.step_cell, self.out_dir, self.stem, self.log, self.identity,
                                      self.sections.data.batch_size * self.world)
        if saved is None:  # every rank checks (and refuses alike, so none waits in an all-reduce); rank 0 removes
            _start_fresh(self.out_dir, self.stem, run, self.main_log, remove=self.main)
            if run.resume:
                self.main_log(f"--resume True: no training state for {self.stem} in {self.out_dir}; "
                              "starting from step 0")
        return saved

    def run(self):
        """Resume or start, run the remaining steps; returns the best validation PSNR of the first set."""
        sections = self.sections
        total = sections.schedule.total_steps
        saved = self.resume()
        start_step = int(saved["step"]) if saved else 0
        progress = _Progress(start_step, total, saved)
        if start_step >= total:
            self.log(f"nothing to do: the state in {self.out_dir} is already at step {start_step} of {total}")
            return progress.best
        self.logger = TrainLogger(self.out_dir, self.stem, [s.name for s in self.eval_sets], start_step,
                                  bool(sections.run.tensorboard), enabled=self.main, echo=self.log)
        self._log_start(start_step)
        dataset, source = create_train_dataset(self.pairs, sections.data, self.net.n_colors,
                                               (sections.run.seed, start_step, total), self.rank, self.world)
        try:
            # one process: Ctrl-C / SIGTERM finish the step and write a state; with several workers a signal
            # reaches every rank, which must not stop at different steps (an all-reduce would wait forever)
            with StopRequest(enabled=self.world == 1, log=self.logger.line) as stop:
                step = self._loop(dataset, len(source), progress, stop)
        except FloatingPointError as exc:
            self.logger.line(f"stopped: {exc}")
            raise
        finally:
            self.logger.close()
        if step < total and stop.requested:
            state = state_path(self.out_dir, self.stem, self.last_state)
            raise Interrupted(f"{stop.name} (Ctrl-C or kill) at step {step}/{total}; training state written to {state}; continue "
                              "with the same command plus --resume True", stop.signum)
        self.log(f"rank {self.rank}/{self.world} finished at step {step}; parameter digest "
                 f"{parameter_digest(self.net)}")
        return progress.best

    def _log_start(self, start_step):
        config, data, schedule, pairs = self.config, self.sections.data, self.sections.schedule, self.pairs
        self.logger.line(
            f"{'resumed at step ' + str(start_step) + ': ' if start_step else ''}training {config.model}-"
            f"{self.net.variant} x{config.scale} on {len(pairs)} images ({pairs.source}; {len(pairs.skipped)} "
            f"smaller than a patch, {len(pairs.unreadable)} unreadable; "
            f"{'in memory' if pairs.in_memory else 'partly read from disk'}), batch {data.batch_size} x "
            f"{self.world} worker(s), LR patch {data.patch_size}, {schedule.total_steps} steps, "
            f"{schedule.lr_scheduler} lr {schedule.lr:g}, loss scale {self.loss_scale}")
        run, out, stem = self.sections.run, self.out_dir, self.stem
        saves = f"every {int(run.save_every) or run.val_every} steps"
        if float(run.save_every_minutes) > 0:
            saves += f" and every {float(run.save_every_minutes):g} min"
        self.logger.line(
            f"writing to {out}: weights {stem}_best.ckpt (best validation) and {stem}_last.ckpt every "
            f"{run.val_every} steps; resumable state {stem}_state_<step>.ckpt {saves} and on Ctrl-C (the newest "
            f"{run.keep_last_ckpt} kept); log {stem}_train.log; curves {stem}_train_log.csv (plot: python "
            f"scripts/plot_training_log.py --log {self.logger.csv_path} --out curve.png)"
            + (f"; TensorBoard {os.path.join(out, 'tensorboard')}" if run.tensorboard else ""))
        freeze_steps = self.sections.optim.freeze_residual_steps
        if freeze_steps > 0:
            self.logger.line(f"freezing {len(self.frozen)} residual-stream tensors for the first {freeze_steps} steps")

    def _loop(self, dataset, epoch_size, progress, stop):
        """Run the remaining steps; returns the last step. Raises FloatingPointError when training must stop.

        A state is written every ``save_every`` steps (0: at every validation), when
        ``save_every_minutes`` passed since the last one, and after the step during which
        ``stop`` (:class:`~src.utils.stop_signals.StopRequest`) saw a signal, which ends the loop.

        A step whose loss or gradient is not finite makes no update and is logged as
        skipped; ``max_bad_steps`` of them in a row stop the run. An update that leaves
        a weight non-finite stops the run at once, before any checkpoint is written.
        """
        run, total, step_cell = self.sections.run, self.sections.schedule.total_steps, self.step_cell
        log_every, save_every = max(1, int(run.log_every)), int(run.save_every) or run.val_every
        freeze_steps = self.sections.optim.freeze_residual_steps
        on, off = Tensor(1.0, ms.float32), Tensor(0.0, ms.float32)
        step = self.last_state = progress.start_step
        self.bad_run = 0
        interval, last_save = 60.0 * float(run.save_every_minutes), time.monotonic()
        for lr_b, hr_b in dataset.create_tuple_iterator(num_epochs=1):
            step += 1
            loss, finite = step_cell(lr_b, hr_b, on if step <= freeze_steps else off)
            if step == progress.start_step + 1:
                stop.arm()  # after the first compiled step: MindSpore has set its own handlers by then
            self._check_step(step, progress, loss if bool(finite.asnumpy()) else None)
            if step % log_every == 0 and self.main:
                self._log_line(step, progress, epoch_size)
            if self.main and (step % run.val_every == 0 or step == total):
                self.validate_and_checkpoint(progress, step)
                progress.val = LossInterval()
                stop.arm()  # the evaluation graph's first run may set MindSpore's handlers again
            due = interval > 0 and time.monotonic() - last_save >= interval
            if self.main and (step % save_every == 0 or step == total or due or stop.requested):
                self._save_state(progress, step)
                last_save = time.monotonic()
            if stop.requested:
                break
        return step

    def _check_step(self, step, progress, loss):
        """Record one step's loss (None: skipped, not finite); raise FloatingPointError when training must stop."""
        optim, schedule = self.sections.optim, self.sections.schedule
        if loss is not None:
            self.bad_run = 0
            progress.add(float(loss.asnumpy()))
            if not self.step_cell.weights_are_finite():
                names = self.step_cell.non_finite_weights()
                kept = f"the newest state is step {self.last_state}" if self.last_state else "no state written"
                raise FloatingPointError(
                    f"step {step}: the update made {len(names)} weight tensor(s) non-finite "
                    f"({', '.join(names[:3])}) although the loss and gradients were finite; stopped without "
                    f"writing a checkpoint ({kept}); lower --lr (now {schedule.lr:g}) or check --beta1/--beta2")
            return
        self.bad_run += 1
        progress.add(None)
        max_bad = int(optim.max_bad_steps)
        self.logger.line(f"step {step}/{schedule.total_steps} skipped: non-finite loss or gradient, no update "
                         f"({self.bad_run} in a row; --max_bad_steps {max_bad})")
        if self.bad_run >= max_bad:
            raise FloatingPointError(
                f"{self.bad_run} consecutive steps with a non-finite loss or gradient (last: step {step}), "
                "updates skipped; lower --lr, set --clip_grad_norm, or check the training images")

    def _save_state(self, progress, step):
        run, batch = self.sections.run, self.sections.data.batch_size
        save_state(self.step_cell, self.out_dir, self.stem, step,
                   dict(progress.state(step), seed=int(run.seed), global_batch=batch * self.world,
                        samples=step * batch * self.world, run=self.identity),
                   int(run.keep_last_ckpt))
        self.last_state = step

    def _log_line(self, step, progress, epoch_size):
        lr, total = self.lrs[step - 1], self.sections.schedule.total_steps
        rate, eta, _ = progress.speed(step)
        epoch = step * self.sections.data.batch_size * self.world / max(1, epoch_size)
        self.logger.line(f"step {step}/{total} epoch {epoch:.1f} {progress.log.describe()} "
                         f"lr {lr:.2e}{progress.scores} | {rate:.2f} it/s, ETA {eta / 60:.0f} min")
        self.logger.scalars(step, {"train/loss": progress.log.mean(), "train/skipped": progress.log.skipped,
                                   "train/lr": lr})
        progress.log = LossInterval()

    def validate_and_checkpoint(self, progress, step):
        """Validate the evaluation weights; write the last (and, if better, best) checkpoint.

        Updates ``progress.best`` and ``progress.scores``.
        """
        logger = self.logger
        eval_net = _evaluation_net(self.net, self.step_cell)
        scores = _validate(eval_net, self.sections.protocol, self.eval_sets)
        self.step_cell.set_train(True)
        rate, eta, elapsed = progress.speed(step)
        logger.validation_row(step, progress.val, self.lrs[step - 1], elapsed, scores)
        meta = dict(model_meta(self.net), **self.quant_meta)
        values = {p.name: p.data.asnumpy() for p in eval_net.get_parameters()}
        last_path = os.path.join(self.out_dir, f"{self.stem}_last.ckpt")
        check_finite(values, last_path)
        save_checkpoint(eval_net, last_path, meta=meta)
        scores_text = " ".join(f"{k} {v:.2f}" for k, v in scores.items())
        progress.scores = " | last val " + scores_text
        first = next(iter(scores.values()))
        if first > progress.best:
            progress.best = first
            save_checkpoint(eval_net, os.path.join(self.out_dir, f"{self.stem}_best.ckpt"), meta=meta)
        logger.line(f"step {step}/{self.sections.schedule.total_steps} validation {scores_text}"
                    f" (best {progress.best:.2f}) {progress.val.describe()} | {rate:.2f} it/s, ETA {eta / 60:.0f} min")
