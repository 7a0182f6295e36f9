"""Resumable training state: every parameter of the train step plus progress metadata.

A state file ``<stem>_state_<step>.ckpt`` holds the weights, the optimizer moments
and step counter, the EMA, the loss scale and, as metadata (``train_progress``,
JSON), the step, the stream position, the best validation PSNR, the running loss
sums of the current log and validation intervals, the training seconds so far, and
the run's identity (:func:`run_identity`). Files are written atomically (temp file
+ rename), so a file with this name is always complete; the newest ``keep`` are
kept. No state is written while any of its tensors holds a NaN or infinity
(:func:`check_finite`).

Resuming (:func:`load_latest_state`) takes the newest readable state and refuses
one written by a different run, naming the options that differ. What identifies a
run is everything that shapes the weights a resumed run would produce: the model
(family, variant, scale, form, options, QAT quantizer settings), the training images
(names and sizes), ``patch_size``, the global batch, ``seed``, the augmentation options, the
optimizer and loss options, and the learning-rate schedule except its length.
Left out on purpose, so they can change on resume: ``total_steps`` (a finished run
may be extended; the cosine schedule is rebuilt from the new length), ``val_every``,
``save_every``, ``save_every_minutes``, ``log_every``, ``keep_last_ckpt``, ``tensorboard``, ``max_bad_steps``,
``num_workers`` and ``train_cache_gb`` (the sample stream does not depend on them),
paths that only locate files (``ckpt_dir``, ``cache_dir``, ``val_data_path``; the
training images are identified by their names and sizes, not their folder), and
``device_target`` / ``mode`` / ``amp_level`` (``loss_scale`` is recorded as given, so
``auto`` stays ``auto`` when it resolves differently on another device). The SHA-256 of
the initial weights file (``pre_trained`` / ``init_from``) is recorded too, but a change
is only reported: the state's weights replace the initial ones on resume.
"""
import glob
import hashlib
import json
import os
import re

import numpy as np
import mindspore as ms

from src.engine.train_step import TRANSIENT_PARAMS
from src.weights.checkpoint import CheckpointError, save_checkpoint
from src.errors import UserError

SCHEDULE_PARAMS = ("learning_rate",)
#: identity keys reported but not refused on resume: the state's weights replace the initial ones,
#: so a changed (e.g. still improving) --pre_trained / --init_from file cannot change the result
INFO_KEYS = ("init_weights",)
_STATE_RE = re.compile(r"_state_(\d+)\.ckpt$")

# identity keys that are not options of their own: the options a user changes to make them match
_KEY_OPTIONS = {"global_batch": "--batch_size (x workers)", "train_images": "--train_path (its images)",
                "init_weights": "--pre_trained / --init_from (the file's content)",
                "quant_config": "--w_bit/--a_bit/--quant_method (the QAT quantizer)", "form": "--qat"}


def state_path(out_dir, stem, step):
    return os.path.join(out_dir, f"{stem}_state_{step:08d}.ckpt")


def list_states(out_dir, stem):
    """State files of ``stem`` in ``out_dir``, newest step first."""
    found = []
    for path in glob.glob(os.path.join(glob.escape(out_dir), f"{glob.escape(stem)}_state_*.ckpt")):
        match = _STATE_RE.search(path)
        if match:
            found.append((int(match.group(1)), path))
    return [p for _, p in sorted(found, reverse=True)]


def file_digest(path):
    """SHA-256 (first 16 hex digits) of a file's bytes; ``""`` for an empty path."""
    if not path:
        return ""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def images_fingerprint(paths, lr_paths=None):
    """``"<count> images, <sha>"`` over the training images' names and byte sizes (and their LR files').

    Names are taken relative to the images' common folder, so the same images give the
    same fingerprint wherever the folder is and however ``train_path`` points at it.
    ``lr_paths``: ``{hr path: lr path}`` for layouts with given LR files.
    """
    lr_paths = lr_paths or {}
    root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths]) if paths else ""
    digest = hashlib.sha256()
    for path in paths:
        line = f"{os.path.relpath(os.path.abspath(path), root)}|{os.path.getsize(path)}"
        if path in lr_paths and os.path.isfile(lr_paths[path]):
            line += f"|{os.path.basename(lr_paths[path])}|{os.path.getsize(lr_paths[path])}"
        digest.update((line + "\n").encode())
    return f"{len(paths)} images, {digest.hexdigest()[:16]}"


def run_identity(sections, meta, world, images, init_weights="", quant_config="", uses=()):
    """The options that identify a training run (see the module docstring), as a flat JSON-able dict.

    ``sections``: :class:`~src.engine.sections.TrainingSections`; ``meta``: the model description
    (:func:`~src.weights.checkpoint.model_meta`: model, variant, scale, form, resolved options);
    ``images``: :func:`images_fingerprint` of the training images; ``init_weights``: digest of the
    initial weights file; ``quant_config``: the QAT quantizer (JSON) or ``""``; ``uses``: optional
    parts of the loss that this model has (``"residual_loss"``, ``"freeze_residual"``).
    """
    data, optim, schedule = sections.data, sections.optim, sections.schedule
    ident = {k: v for k, v in meta.items()}
    ident.update(quant_config=quant_config, init_weights=init_weights, train_images=images,
                 patch_size=int(data.patch_size), global_batch=int(data.batch_size) * int(world),
                 seed=int(sections.run.seed), dataset_enlarge_ratio=int(data.dataset_enlarge_ratio),
                 channel_shuffle=bool(data.channel_shuffle))
    kind = str(schedule.lr_scheduler).lower()
    ident.update(lr=float(schedule.lr), warmup_steps=int(schedule.warmup_steps), lr_scheduler=kind)
    if kind == "cosine":
        ident["min_lr"] = float(schedule.min_lr)
    else:
        ident.update(lr_milestones=[int(m) for m in schedule.lr_milestones], lr_gamma=float(schedule.lr_gamma))
    for key in ("beta1", "beta2", "weight_decay", "clip_grad_norm", "ema_decay"):
        ident[key] = float(getattr(optim, key))
    ident["amsgrad"] = bool(optim.amsgrad)
    ident["loss_scale"] = str(optim.loss_scale).lower()
    if "residual_loss" in uses:
        ident["residual_loss_weight"] = float(optim.residual_loss_weight)
    if "freeze_residual" in uses:
        ident["freeze_residual_steps"] = int(optim.freeze_residual_steps)
    return json.loads(json.dumps(ident))  # the form it has after a round trip through a state file


def _short(value):
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def identity_mismatch(saved, current):
    """``[(key, saved value, current value)]`` for every identity key that differs (missing = None)."""
    keys = list(current) + [k for k in saved if k not in current]
    return [(k, saved.get(k), current.get(k)) for k in keys if saved.get(k) != current.get(k)]


def check_identity(progress, identity, path, global_batch, log=print):
    """Raise ValueError (one line) when the state ``progress`` was written by another run.

    States written before run identities were recorded carry only the seed and the
    global batch; those two are checked and a notice is logged.
    """
    saved = progress.get("run")
    if saved is None:
        log(f"notice: {path} records no run identity (written by an older version): "
            "only the seed and the global batch are checked")
        saved = {"seed": progress.get("seed", identity["seed"]),
                 "global_batch": progress.get("global_batch") or global_batch}
        current = {"seed": identity["seed"], "global_batch": global_batch}
    else:
        current = identity
    diffs = identity_mismatch(saved, current)
    for key, before, now in [d for d in diffs if d[0] in INFO_KEYS]:
        log(f"notice: {_KEY_OPTIONS.get(key, key)} differs from the run's start ({_short(before)} then, "
            f"{_short(now)} now); resuming from the state's weights, which replace the initial ones")
    diffs = [d for d in diffs if d[0] not in INFO_KEYS]
    if diffs:
        listed = "; ".join(f"{k} {_short(a)} in the state, {_short(b)} now" for k, a, b in diffs)
        options = ", ".join(_KEY_OPTIONS.get(k, f"--{k}") for k, _, _ in diffs)
        raise UserError(f"--resume True: {path} is from a different run ({listed}); resume with the same "
                         f"{options}, or train into a new --ckpt_dir")


def check_finite(values, path):
    """Raise FloatingPointError if any float tensor in ``values`` (``{name: array}``) is not finite.

    Called right before a checkpoint or state is written, so no file ever holds a NaN
    or infinity; the file already at ``path`` (if any) is left as it is.
    """
    bad = [name for name, value in values.items()
           if np.issubdtype(np.asarray(value).dtype, np.floating) and not np.isfinite(value).all()]
    if bad:
        raise FloatingPointError(
            f"refusing to write {os.path.basename(path)}: {len(bad)} tensor(s) hold NaN or infinity "
            f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}); the previous file is kept")


def save_state(step_cell, out_dir, stem, step, progress, keep=3):
    """Write the state after ``step`` and remove all but the newest ``keep`` state files.

    ``progress``: JSON-able metadata. Raises FloatingPointError,
    writing nothing, when a tensor of the step is not finite.
    """
    values = step_cell.state_values()
    path = state_path(out_dir, stem, step)
    check_finite(values, path)
    meta = {"train_progress": json.dumps(dict(progress, step=int(step)))}
    path = save_checkpoint(values, path, meta=meta)
    for old in list_states(out_dir, stem)[max(1, int(keep)):]:
        os.remove(old)
    return path


def _read_state(path):
    raw = ms.load_checkpoint(path)
    progress = json.loads(str(raw.pop("train_progress")))
    return {k: v.asnumpy() for k, v in raw.items()}, progress


def load_latest_state(step_cell, out_dir, stem, log=print, identity=None, global_batch=None):
    """Load the newest readable state into ``step_cell``; return its progress dict (None if no state).

    With ``identity`` (:func:`run_identity`), a state of a different run is refused
    (ValueError naming the differing keys). When state files exist but none can be
    read, raises CheckpointError instead of letting the run start over. Temp files
    left by a killed writer (``.<name>.tmp*``) are removed, never read.
    """
    stem_glob = glob.escape(stem)
    # atomic_target's temp names (temp_prefix: '.<name>.') of exactly this run's outputs;
    # '.<stem>_*' would also take the files of a '<stem>_qat' run in the same folder
    for pattern in (f".{stem_glob}_state_[0-9]*.ckpt.*", f".{stem_glob}_best.ckpt.*", f".{stem_glob}_last.ckpt.*"):
        for stale in glob.glob(os.path.join(glob.escape(out_dir), pattern)):
            os.remove(stale)
    states = list_states(out_dir, stem)
    problems = []
    for path in states:
        try:
            values, progress = _read_state(path)
        except Exception as exc:  # pylint: disable=broad-except  (unreadable: fall back to an older one)
            name = os.path.basename(path)
            why = (str(exc).splitlines() or [type(exc).__name__])[0].replace(path, name)[:160]
            problems.append(f"{name}: {why}")
            log(f"skipping unreadable training state {path}: {why}")
            continue
        if identity is not None:
            check_identity(progress, identity, path, global_batch, log)
        # the schedule comes from this run's config (so a run can be extended), not from the file
        own = {p.name: p for p in step_cell.get_parameters()
               if p.name not in SCHEDULE_PARAMS and p.name not in TRANSIENT_PARAMS}
        missing = sorted(set(own) - set(values))
        misfit = sorted(k for k in own if k in values and tuple(values[k].shape) != tuple(own[k].shape))
        if missing or misfit:
            raise CheckpointError(
                f"{path} does not fit this run ({len(missing)} missing, {len(misfit)} mis-shaped tensors, e.g. "
                f"{(missing + misfit)[0]}): it was written with other model or optimizer options; "
                "start a new --ckpt_dir or restore the original options")
        for name, param in own.items():
            param.set_data(ms.Tensor(np.asarray(values[name]), param.dtype))
        progress["path"] = path
        return progress
    if states:
        raise CheckpointError(
            f"--resume True: none of the {len(states)} training state(s) of {stem} in {out_dir} can be read "
            f"({problems[0]}); nothing was changed: restore a state file, or start over with "
            "--resume False --overwrite True")
    return None

