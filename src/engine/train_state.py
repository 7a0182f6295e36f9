"""Resumable training state: every parameter of the train step plus progress metadata.

A state file ``<stem>_state_<step>.ckpt`` holds the weights, the optimizer moments
and step counter, the EMA, the loss scale and, as metadata, the step, the data seed
and stream position, the best validation PSNR and the model description. Files are
written atomically (temp file + rename), so a file with this name is always
complete; the newest ``keep`` are kept. Resuming takes the newest readable one
(the learning-rate schedule itself is rebuilt from the resumed run's options, so
``--total_steps`` may be raised to extend a finished run).
"""
import glob
import json
import os
import re

import numpy as np
import mindspore as ms

from src.weights.checkpoint import CheckpointError, save_checkpoint

SCHEDULE_PARAMS = ("learning_rate",)
_STATE_RE = re.compile(r"_state_(\d+)\.ckpt$")


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


def save_state(step_cell, out_dir, stem, step, progress, keep=3):
    """Write the state after ``step`` and remove all but the newest ``keep`` state files."""
    meta = {"train_progress": json.dumps(dict(progress, step=int(step)))}
    path = save_checkpoint(step_cell.state_values(), state_path(out_dir, stem, step), meta=meta)
    for old in list_states(out_dir, stem)[max(1, int(keep)):]:
        os.remove(old)
    return path


def _read_state(path):
    raw = ms.load_checkpoint(path)
    progress = json.loads(str(raw.pop("train_progress")))
    return {k: v.asnumpy() for k, v in raw.items()}, progress


def load_latest_state(step_cell, out_dir, stem, log=print):
    """Load the newest readable state into ``step_cell``; return its progress dict (None if no state).

    Temp files left by a killed writer (``.<name>.tmp<pid>.ckpt``) are removed, never read.
    """
    for stale in glob.glob(os.path.join(glob.escape(out_dir), f".{glob.escape(stem)}_*.tmp*")):
        os.remove(stale)
    for path in list_states(out_dir, stem):
        try:
            values, progress = _read_state(path)
        except Exception as exc:  # pylint: disable=broad-except  (unreadable: fall back to an older one)
            log(f"skipping unreadable training state {path}: {str(exc).splitlines()[0][:100]}")
            continue
        # the schedule comes from this run's config (so a run can be extended), not from the file
        own = {p.name: p for p in step_cell.get_parameters() if p.name not in SCHEDULE_PARAMS}
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
    return None
