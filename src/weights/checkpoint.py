"""MindSpore checkpoint I/O: atomic save with model metadata, checked load.

Every checkpoint the project writes carries ``model``, ``variant`` and
``scale`` entries, so that loading into a model of another scale or variant
fails with a message that says which one the file was made for.
"""
import contextlib
import os

import numpy as np
import mindspore as ms

from src.utils.atomic import atomic_target

META_KEYS = ("model", "variant", "scale", "form", "n_colors", "act", "linear_block_type", "feature_size",
             "adder_eta", "quant_config", "quant_method")


class CheckpointError(ValueError):
    """A checkpoint cannot be used for the requested model."""


def save_checkpoint(params, path, meta=None):
    """Write ``params`` (a Cell or ``{name: array}``) to ``path`` atomically.

    The file is first written next to the target and then renamed, so a reader
    never sees a partial checkpoint and an existing file survives a crash.
    """
    if isinstance(params, dict):
        params = [{"name": k, "data": ms.Tensor(np.asarray(v))} for k, v in params.items()]
    with atomic_target(path, suffix=".ckpt") as tmp, _mindspore_log_quiet():
        ms.save_checkpoint(params, tmp, append_dict=dict(meta or {}))
    return os.path.abspath(path)


@contextlib.contextmanager
def _mindspore_log_quiet():
    """Silence MindSpore's logger while it writes: on a failed write (full disk, ...) it logs a
    CRITICAL line and re-raises the ``OSError``, which the entry scripts report as one line."""
    from mindspore import log as ms_log  # pylint: disable=import-outside-toplevel
    logger = ms_log._get_logger()  # pylint: disable=protected-access
    disabled = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = disabled


def read_checkpoint(path):
    """Return ``(params {name: np.ndarray}, meta {key: value})``."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path} (check --pre_trained)")
    try:
        raw = ms.load_checkpoint(path)
    except Exception as exc:  # MindSpore raises ValueError/RuntimeError for corrupt files
        raise CheckpointError(
            f"{path} is not a readable MindSpore checkpoint ({str(exc).splitlines()[0][:120]}); "
            "for a PyTorch .pth run scripts/convert_torch_weights.py first") from None
    meta = {}
    params = {}
    for name, value in raw.items():
        if name in META_KEYS:
            if isinstance(value, ms.Parameter):
                array = value.asnumpy()
                if array.size != 1:
                    raise CheckpointError(f"{path}: metadata '{name}' is a tensor of shape {tuple(array.shape)}, not "
                                          "one value; the file is damaged or was not written by this project")
                value = array.item()
            meta[name] = value
        else:
            params[name] = value.asnumpy() if hasattr(value, "asnumpy") else np.asarray(value)
    return params, meta


def check_fit(net, params, source="checkpoint"):
    """Raise CheckpointError listing every missing, unexpected or mis-shaped parameter."""
    expected = {p.name: tuple(p.shape) for p in net.get_parameters()}
    problems = []
    for name, shape in expected.items():
        if name not in params:
            problems.append(f"{name} missing")
        elif tuple(params[name].shape) != shape:
            problems.append(f"{name}: {source} {tuple(params[name].shape)} vs model {shape}")
    problems += [f"{name} unexpected" for name in params if name not in expected]
    if problems:
        shown = "; ".join(problems[:8]) + (f"; ... {len(problems) - 8} more" if len(problems) > 8 else "")
        raise CheckpointError(
            f"{source} does not fit {describe(net)}: {shown} "
            "(wrong --model/--variant/--scale for these weights?)")


def describe(net):
    return f"{getattr(net, 'model_name', type(net).__name__)}-{getattr(net, 'variant', '?')} x{getattr(net, 'scale', '?')}"


def load_into(net, path):
    """Load a checkpoint into ``net`` after checking metadata, names and shapes.

    Quantizer bounds in the file are ignored when ``net`` is a float model, so a
    calibrated checkpoint also serves as the float model it was made from.
    """
    params, meta = read_checkpoint(path)
    scale = getattr(net, "scale", None)
    if "scale" in meta and not (isinstance(meta["scale"], int) or str(meta["scale"]).isdigit()):
        raise CheckpointError(f"{path}: metadata scale={meta['scale']!r} is not allowed (allowed: 2, 3, 4); "
                              "the file is damaged or was not written by this project")
    if "scale" in meta and scale is not None and int(meta["scale"]) != int(scale):
        raise CheckpointError(
            f"{path} was trained for x{meta['scale']} but the model is x{scale}; "
            f"pass --scale {meta['scale']} or a x{scale} checkpoint")
    model = getattr(net, "model_name", None)
    if "model" in meta and model and str(meta["model"]) != model:
        raise CheckpointError(
            f"{path} holds a '{meta['model']}' model but --model is '{model}'; pass --model {meta['model']}")
    if not any(".act_quant." in p.name or ".weight_quant." in p.name for p in net.get_parameters()):
        params = {k: v for k, v in params.items() if ".act_quant." not in k and ".weight_quant." not in k}
    check_fit(net, params, source=os.path.basename(path))
    ms.load_param_into_net(net, {k: ms.Parameter(ms.Tensor(v), name=k) for k, v in params.items()},
                           strict_load=True)
    return meta


def model_meta(net):
    """Metadata stored with every checkpoint: what to build to load it."""
    meta = {"model": getattr(net, "model_name", ""), "variant": getattr(net, "variant", ""),
            "scale": int(getattr(net, "scale", 0)), "form": getattr(net, "form", "deploy")}
    meta.update(getattr(net, "options", {}) or {})
    return meta
