"""Build the model a checkpoint was saved from and return its deploy form.

Checkpoints record ``form`` (train/deploy) and the family options
(``n_colors``, ``linear_block_type``, ...). A training-form checkpoint (e.g. a
collapsed-SESR or dual-stream ETDS run) is loaded into the training form and
converted, so evaluation and export always run the deploy form. A calibrated
(quantized) checkpoint also records its ``quant_config``; :func:`load_for_inference`
then returns the float deploy model and :func:`load_quantized` the quantized one.
"""
import json

from src.models.registry import (FORMS, OPTION_KEYS, SUPPORTED_SCALES, allowed_variants, create_model,
                                 has_training_form, input_weight_name, list_models, option_problem, to_deploy,
                                 variant_allowed)
from src.quantlib.convert import QuantConfig, quantize_model
from src.weights.checkpoint import CheckpointError, load_into, read_checkpoint


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


def _build(model, variant, scale, meta, options):
    opts = dict(options or {})
    opts.update({k: meta[k] for k in OPTION_KEYS if k in meta})
    return create_model(model, variant, scale, form=meta.get("form", "deploy"), **opts)


def _read_checked(ckpt_path, model, scale):
    params, meta = read_checkpoint(ckpt_path)
    check_meta(meta, params, ckpt_path, model, scale)
    return meta


def load_for_inference(model, variant, scale, ckpt_path, options=None):
    """Return ``(float deploy net, meta)`` for ``ckpt_path``; the checkpoint's own options win.

    The metadata is checked (:func:`check_meta`) before the model is built.
    """
    meta = _read_checked(ckpt_path, model, scale)
    net = _build(model, variant, scale, meta, options)
    load_into(net, ckpt_path)
    return to_deploy(net), meta


def quant_config_of(meta):
    """The QuantConfig stored in a calibrated checkpoint, or None."""
    if "quant_config" not in meta:
        return None
    try:
        return QuantConfig(**json.loads(str(meta["quant_config"])))
    except RecursionError:  # '[[[[...' nested beyond the JSON parser's depth
        raise CheckpointError("unreadable quant_config in checkpoint: nested too deeply") from None
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"unreadable quant_config in checkpoint: {exc}") from None


def load_quantized(model, variant, scale, ckpt_path, options=None):
    """Return ``(quantized deploy net, meta)`` from a calibrated checkpoint (no recalibration)."""
    meta = _read_checked(ckpt_path, model, scale)
    qcfg = quant_config_of(meta)
    if qcfg is None:
        raise CheckpointError(f"{ckpt_path} holds no quantizer bounds; calibrate with --quant_method first")
    net = _build(model, variant, scale, {**meta, "form": "deploy"}, options)
    quantize_model(net, qcfg)
    load_into(net, ckpt_path)
    return net, meta


def load_float_and_quantized(model, variant, scale, ckpt_path, options=None):
    """``(float deploy net, quantized net or None, meta)``: the quantized net only for a calibrated checkpoint."""
    fp_net, meta = load_for_inference(model, variant, scale, ckpt_path, options)
    q_net = None
    if quant_config_of(meta) is not None:
        q_net, _ = load_quantized(model, variant, scale, ckpt_path, options)
    return fp_net, q_net, meta
