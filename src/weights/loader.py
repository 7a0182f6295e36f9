"""Build the model a checkpoint was saved from and return its deploy form.

Checkpoints record ``form`` (train/deploy) and the family options
(``n_colors``, ``linear_block_type``, ...). A training-form checkpoint (e.g. a
collapsed-SESR or dual-stream ETDS run) is loaded into the training form and
converted, so evaluation and export always run the deploy form. A calibrated
(quantized) checkpoint also records its ``quant_config``; :func:`load_for_inference`
then returns the float deploy model and :func:`load_quantized` the quantized one.
"""
import json

from src.models.registry import OPTION_KEYS, create_model, to_deploy
from src.quantlib.deploy import quantize_deploy
from src.quantlib.quant_layers import QuantConfig
from src.weights.checkpoint import CheckpointError, check_meta, load_into, open_checkpoint


def _build(model, variant, scale, meta, options):
    opts = dict(options or {})
    opts.update({k: meta[k] for k in OPTION_KEYS if k in meta})
    return create_model(model, variant, scale, form=meta.get("form", "deploy"), **opts)


def _read_checked(ckpt, model, scale):
    """The :class:`~src.weights.checkpoint.CheckpointFile` of ``ckpt`` (a path or one already read) with
    its metadata checked for ``model`` and ``scale``."""
    ckpt = open_checkpoint(ckpt)
    check_meta(ckpt.meta, ckpt.params, ckpt.path, model, scale)
    return ckpt


def load_for_inference(model, variant, scale, ckpt, options=None):
    """Return ``(float deploy net, meta)`` for ``ckpt`` (a path, or a
    :class:`~src.weights.checkpoint.CheckpointFile` read once by the caller); the checkpoint's own options
    win. The metadata is checked (:func:`check_meta`) before the model is built.
    """
    ckpt = _read_checked(ckpt, model, scale)
    meta = dict(ckpt.meta)
    net = _build(model, variant, scale, meta, options)
    load_into(net, ckpt)
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


def load_quantized(model, variant, scale, ckpt, options=None):
    """Return ``(quantized deploy net, meta)`` from a calibrated checkpoint (a path or a
    :class:`~src.weights.checkpoint.CheckpointFile`; no recalibration)."""
    ckpt = _read_checked(ckpt, model, scale)
    meta = dict(ckpt.meta)
    qcfg = quant_config_of(meta)
    if qcfg is None:
        raise CheckpointError(f"{ckpt.path} holds no quantizer bounds; calibrate with --quant_method first")
    net = _build(model, variant, scale, {**meta, "form": "deploy"}, options)
    quantize_deploy(net, qcfg)
    load_into(net, ckpt)
    return net, meta


def load_float_and_quantized(model, variant, scale, ckpt, options=None):
    """``(float deploy net, quantized net or None, meta)`` of ``ckpt`` (a path, read once here, or a
    :class:`~src.weights.checkpoint.CheckpointFile`): the quantized net only for a calibrated checkpoint."""
    ckpt = open_checkpoint(ckpt)
    fp_net, meta = load_for_inference(model, variant, scale, ckpt, options)
    q_net = None
    if ckpt.calibrated:
        q_net, _ = load_quantized(model, variant, scale, ckpt, options)
    return fp_net, q_net, meta
