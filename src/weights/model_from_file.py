"""Which model a run's weights file holds, so that entry scripts need no --model/--variant/--scale.

Every checkpoint this project writes records ``model``, ``variant``, ``scale`` and the family's
options (:data:`~src.weights.checkpoint.META_KEYS`); a training state records them in its run
identity. :func:`model_keys_from_file` reads them (metadata only, no tensors) from the file an
entry script will use; the configuration loader takes them where the user gave no value and
refuses a given value that contradicts them. Exported files (.onnx/.ort/.mindir/.tflite) are not
read here: their runners take the scale and colours from the file itself.
"""
import glob
import json
import os

from src.weights.checkpoint import META_KEYS, read_meta
from src.errors import UserError

#: configuration keys a checkpoint decides (quantization entries are the checkpoint's own business)
MODEL_KEYS = tuple(k for k in META_KEYS if k not in ("form", "quant_config", "quant_method"))


def _newest_state(ckpt_dir):
    """(path, model keys) of the newest training state in ``ckpt_dir``; ValueError when states of
    several runs are there (the user must say which with --model/--variant/--scale)."""
    found = {}
    for path in glob.glob(os.path.join(glob.escape(ckpt_dir), "*_state_[0-9]*.ckpt")):
        stem, _, step = os.path.basename(path)[:-len(".ckpt")].rpartition("_state_")
        if step.isdigit():
            found.setdefault(stem, []).append((int(step), path))
    if len(found) > 1:
        raise UserError(f"--resume True: {ckpt_dir} holds training states of {len(found)} runs ({', '.join(sorted(found))}); "
                         "say which with --model, --variant and --scale")
    if not found:
        return None, {}
    for _, path in sorted(next(iter(found.values())), reverse=True):
        try:
            progress = json.loads(str(read_meta(path, ("train_progress",)).get("train_progress", "{}")))
        except (ValueError, OSError):
            continue  # a damaged newest state: the trainer reports it and takes the one before
        run = progress.get("run") or {}
        return path, {k: _plain(run[k]) for k in MODEL_KEYS if k in run}
    return None, {}


def model_keys_from_file(values, locate, entry):
    """``(path, {key: value})``: the model keys recorded in the weights ``entry`` will read, or
    ``("", {})`` when there is no such MindSpore checkpoint (none given, an exported file, not found:
    the engines report those). ``values``: the configuration dict; ``locate(path)``: where the engines
    will find a configured path (:func:`src.paths.locate`).

    eval/export: ``pre_trained``; infer: ``model_file``, else ``pre_trained``; train: the newest
    state in ``ckpt_dir`` with ``resume``, else ``pre_trained`` (the checkpoint fine-tuned).
    """
    if entry == "train" and values.get("resume"):
        path, keys = _newest_state(locate(str(values.get("ckpt_dir", ""))))
        if path:
            return path, keys
    path = str(values.get("model_file") or "") if entry == "infer" else ""
    path = locate(path or str(values.get("pre_trained") or ""))
    if entry not in ("eval", "export", "infer", "train") or not path.lower().endswith(".ckpt") \
            or not os.path.isfile(path):
        return "", {}
    meta = read_meta(path, MODEL_KEYS)
    return path, {k: _plain(meta[k]) for k in MODEL_KEYS if k in meta and meta[k] not in ("", None)}


def _plain(value):
    """A whole number stored as a float (``scale`` 2.0: a file whose metadata went through a float tensor) as
    the int it is, so it compares equal to ``--scale 2``; anything else as read."""
    return int(value) if isinstance(value, float) and value.is_integer() else value
