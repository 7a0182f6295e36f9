"""MindSpore checkpoint I/O: atomic save with model metadata, checked load.

Every checkpoint the project writes carries ``model``, ``variant`` and
``scale`` entries, so that loading into a model of another scale or variant
fails with a message that says which one the file was made for.
"""
import logging
import os
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np
import mindspore as ms

from src.models.registry import (FORMS, OPTION_KEYS, SUPPORTED_SCALES, allowed_variants, has_training_form,
                                 input_weight_name, list_models, option_problem, variant_allowed)
from src.utils.atomic import atomic_target
from src.utils.mindspore_log import mindspore_log_level
from src.errors import UserError

#: Metadata entries of a checkpoint: what to build (the ModelSpec fields and options), then quantization.
META_KEYS = ("model", "variant", "scale", "form") + OPTION_KEYS + ("quant_config", "quant_method")


class CheckpointError(UserError):
    """A checkpoint cannot be used for the requested model."""


def save_checkpoint(params, path, meta=None):
    """Write ``params`` (a Cell or ``{name: array}``) to ``path`` atomically.

    The file is first written next to the target and then renamed, so a reader
    never sees a partial checkpoint and an existing file survives a crash.
    """
    if isinstance(params, dict):
        params = [{"name": k, "data": ms.Tensor(np.asarray(v))} for k, v in params.items()]
    # MindSpore logs a CRITICAL line before re-raising a failed write (full disk, ...): the
    # OSError is what the entry scripts report, as one line
    with atomic_target(path, suffix=".ckpt") as tmp, mindspore_log_level(logging.CRITICAL + 1):
        ms.save_checkpoint(params, tmp, append_dict=dict(meta or {}))
    return os.path.abspath(path)


def _load(path, choice_func=None):
    """``mindspore.load_checkpoint`` of ``path`` (only the entries ``choice_func`` picks); CheckpointError for a
    file MindSpore cannot read. ``{}`` when ``choice_func`` picks nothing of a readable file."""
    try:
        return ms.load_checkpoint(path, choice_func=choice_func)
    except Exception as exc:  # MindSpore raises ValueError/RuntimeError for corrupt files
        if choice_func is not None and "empty after filter" in str(exc):
            return {}
        raise CheckpointError(
            f"{path} is not a readable MindSpore checkpoint ({str(exc).splitlines()[0][:120]}); "
            "for a PyTorch .pth or a .tflite run scripts/convert_weights.py first") from None


def _meta_value(value):
    """A metadata entry as a Python value (a one-element tensor -> its number); None for a tensor of
    another size (the file is damaged or not this project's)."""
    if not isinstance(value, ms.Parameter):
        return value
    array = value.asnumpy()
    return array.item() if array.size == 1 else None


@dataclass(frozen=True, eq=False)
class CheckpointFile:
    """A checkpoint read once: ``path``, ``params`` ``{name: np.ndarray}`` (read-only arrays, as stored:
    float32 weights, quantizer bounds) and ``meta`` ``{key: value}`` (:data:`META_KEYS`, numbers as
    Python numbers). Entry points read the file once (:func:`open_checkpoint`) and hand this value down:
    the loaders (:mod:`src.weights.loader`), :func:`load_into` and :func:`read_checkpoint` take it in
    place of a path without reading again."""
    path: str
    params: Mapping = field(repr=False)  # every tensor: not printed, not compared (eq=False: identity)
    meta: Mapping = field(default_factory=dict)

    @property
    def calibrated(self):
        """True for a calibrated (quantized) checkpoint: it records its ``quant_config``."""
        return "quant_config" in self.meta


def open_checkpoint(source):
    """The :class:`CheckpointFile` of ``source``: a path (read now) or a CheckpointFile (returned as is).
    CheckpointError for a missing, folder or unreadable file, or metadata that is not one value."""
    if isinstance(source, CheckpointFile):
        return source
    path = source
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint {path} is a folder, not a file (check --pre_trained)")
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path} (check --pre_trained)")
    meta = {}
    params = {}
    for name, value in _load(path).items():
        if name in META_KEYS:
            meta[name] = _meta_value(value)
            if meta[name] is None:
                raise CheckpointError(f"{path}: metadata '{name}' is a tensor of shape {tuple(value.shape)}, not "
                                      "one value; the file is damaged or was not written by this project")
        else:
            params[name] = value.asnumpy() if hasattr(value, "asnumpy") else np.array(value)
            params[name].flags.writeable = False  # shared by every load of this read: copied into each net
    return CheckpointFile(path, MappingProxyType(params), MappingProxyType(meta))


def read_checkpoint(source):
    """``(params {name: np.ndarray}, meta {key: value})`` of ``source`` (a path, read now, or a
    :class:`CheckpointFile`, not read again)."""
    ckpt = open_checkpoint(source)
    return dict(ckpt.params), dict(ckpt.meta)


def read_meta(path, keys=META_KEYS):
    """The metadata entries ``keys`` of the checkpoint ``path`` (``{key: value}``, numbers as Python
    numbers), read without its tensors; an entry that is not one value is left out (:func:`read_checkpoint`
    refuses it when the file is used). Raises CheckpointError for a file MindSpore cannot read."""
    values = {name: _meta_value(value)
              for name, value in _load(path, lambda name: name in keys).items()}
    return {name: value for name, value in values.items() if value is not None}


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
    """'model-variant xS' for messages (the class name and '?' for a network without a spec)."""
    if net.spec is None:
        return f"{type(net).__name__}-? x{net.scale}"
    return f"{net.spec.model}-{net.spec.variant} x{net.spec.scale}"


def _refuse(path, key, value, allowed):
    raise CheckpointError(f"{path}: metadata {key}={repr(value)[:60]} is not allowed (allowed: {allowed}); "
                          "the file is damaged or was not written by this project")


def check_meta(meta, params, path, model=None, scale=None):
    """Refuse checkpoint metadata that is not a model this project can build, before building anything.

    Checks ``model`` (a known family, and ``model`` when given), ``scale`` (one of SUPPORTED_SCALES,
    and ``scale`` when given), ``form`` (train/deploy, train only for families that have it),
    ``variant`` (a name of the family), each family option against its allowed values, and the
    options that set tensor shapes against the file's tensors (``n_colors`` = input channels of the
    first conv, SESR's ``feature_size`` = width of its input expansion). Raises CheckpointError
    naming the key, the value and what is allowed.
    """
    family = meta.get("model")
    if family is not None:
        if family not in list_models():
            _refuse(path, "model", family, ", ".join(list_models()))
        if model and str(model).lower() != family:
            raise CheckpointError(f"{path} holds a '{family}' model but --model is '{model}'; pass --model {family}")
    family = family or (str(model).lower() if model else None)
    if "scale" in meta:
        value = meta["scale"]
        value = int(value) if isinstance(value, float) and value.is_integer() else value
        if isinstance(value, bool) or not isinstance(value, (int, float, str)) or str(value).strip() not in \
                {str(s) for s in SUPPORTED_SCALES}:
            _refuse(path, "scale", value, ", ".join(map(str, SUPPORTED_SCALES)))
        if scale is not None and int(str(value).strip()) != int(scale):
            raise CheckpointError(f"{path} was trained for x{int(str(value).strip())} but the model is x{scale}; "
                                  f"pass --scale {int(str(value).strip())} or a x{scale} checkpoint")
    form = meta.get("form", "deploy")
    forms = FORMS if family is None or has_training_form(family) else ("deploy",)
    if form not in forms:
        _refuse(path, "form", form, ", ".join(forms))
    if family is not None and "variant" in meta and not variant_allowed(family, meta["variant"]):
        _refuse(path, "variant", meta["variant"], allowed_variants(family))
    for key in OPTION_KEYS:
        if key in meta:
            allowed = option_problem(key, meta[key])
            if allowed:
                _refuse(path, key, meta[key], allowed)
    if family is None:
        return
    first = params.get(input_weight_name(family, form))
    n_colors = meta.get("n_colors")
    if n_colors and first is not None and (first.ndim != 4 or first.shape[1] != n_colors):
        raise CheckpointError(f"{path}: metadata n_colors={n_colors} but the input conv "
                              f"{input_weight_name(family, form)} has shape {tuple(first.shape)} "
                              f"({first.shape[1] if first.ndim > 1 else '?'} input channels); the file is inconsistent")
    size = meta.get("feature_size")
    if family == "sesr" and form == "train" and size and first is not None and first.shape[0] != size:
        raise CheckpointError(f"{path}: metadata feature_size={size} but input_block.expand.weight has shape "
                              f"{tuple(first.shape)} ({first.shape[0]} channels); the file is inconsistent")



# quantizer bounds: conv inputs and weights, and the deployment sites (src/quantlib/deploy.py)
QUANTIZER_MARKS = (".act_quant.", ".weight_quant.", ".out_quant.", ".in_quant.")


def _is_quantizer(name):
    return any(mark in name for mark in QUANTIZER_MARKS)


def load_into(net, source):
    """Load a checkpoint (``source``: a path or a :class:`CheckpointFile`, not read again) into ``net``
    after checking metadata (:func:`check_meta`), names and shapes; returns its metadata.

    Quantizer bounds in the file are ignored when ``net`` is a float model, so a
    calibrated checkpoint also serves as the float model it was made from. The tensors are copied, so
    one read serves several networks.
    """
    ckpt = open_checkpoint(source)
    path, params, meta = ckpt.path, dict(ckpt.params), dict(ckpt.meta)
    check_meta(meta, params, path, net.spec.model if net.spec else None, net.scale)
    if not any(_is_quantizer(p.name) for p in net.get_parameters()):
        params = {k: v for k, v in params.items() if not _is_quantizer(k)}
    check_fit(net, params, source=os.path.basename(path))
    ms.load_param_into_net(net, {k: ms.Parameter(ms.Tensor(np.array(v)), name=k) for k, v in params.items()},
                           strict_load=True)
    return meta


def model_meta(net):
    """Metadata stored with every checkpoint: what to build to load it (``net.spec``; model and
    variant '' for a network built without the registry)."""
    if net.spec is None:
        return {"model": "", "variant": "", "scale": int(net.scale), "form": "deploy"}
    return net.spec.meta()
