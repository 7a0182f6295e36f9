"""Post-training calibration: statistics from the float model, bounds into the quantized one.

Activation statistics are collected on the float model (before conversion) with
forward pre-hooks in PyNative mode, keyed by layer name; weights are read
directly. :func:`calibrate` then converts the model and installs the bounds, so
no quantizer has to be switched on or off inside a compiled graph.
"""
from dataclasses import dataclass

from mindspore import Tensor

from src.quantlib.observers import observer_class
from src.quantlib.quant_layers import quant_layers, quantizable_layers, quantize_model
from src.utils.hooks import forward_hooks


@dataclass
class CalibrationConfig:
    """How bounds are fitted: observer ``method`` (a key of :data:`~src.quantlib.observers.OBSERVERS`),
    its options (``percentile`` in (0.5, 1], the DBDC clip fraction ``dbdc_p``), the calibration
    ``batch_size`` (patches per forward pass; statistics are averaged per batch) and ``equalize``
    (cross-layer activation-range equalisation first, :mod:`src.quantlib.equalize`);
    ``equalize_if_pairs``: equalise only a model that declares conv pairs and skip the others
    (a per-bit-width recipe asks for equalisation on every model; a user's explicit
    ``--equalize True`` on a model without pairs is an error). ``ValueError`` for an unknown method."""
    method: str = "dbdc"
    percentile: float = 0.9999
    dbdc_p: float = 1e-4
    batch_size: int = 2
    equalize: bool = False
    equalize_if_pairs: bool = False

    def __post_init__(self):
        observer_class(self.method)


def observe_inputs(net, layers, on_input, batches):
    """Run ``net`` (eval mode, PyNative) over ``batches`` (float32 NCHW arrays) and call
    ``on_input(name, array)`` with the input of every ``(name, cell)`` in ``layers``."""
    def hook_for(name):
        return lambda _cell, inputs: on_input(name, inputs[0].asnumpy())
    with forward_hooks([(layer, hook_for(name)) for name, layer in layers], pre=True):
        net.set_train(False)
        for batch in batches:
            net(Tensor(batch))


def _as_calibration(calib):
    return calib if isinstance(calib, CalibrationConfig) else CalibrationConfig(str(calib))


def collect_activation_bounds(net, batches, calib, a_bit=8):
    """``{layer name: (lower, upper)}`` of every quantizable layer's input over ``batches`` (float32
    NCHW arrays), fitted for an ``a_bit`` grid by the observer ``calib`` names (a
    :class:`CalibrationConfig`, or a method name with default options). ``ValueError`` for an
    unknown method."""
    calib = _as_calibration(calib)
    layers = quantizable_layers(net)
    observers = {name: observer_class(calib.method).from_settings(a_bit, calib) for name, _ in layers}
    observe_inputs(net, layers, lambda name, x: observers[name].collect(x), batches)
    return {name: obs.bounds() for name, obs in observers.items()}


def calibrate(net, batches, calib, qcfg):
    """Quantize ``net`` (a float model) in place as ``qcfg`` (:class:`QuantConfig`) says and set every
    quantizer's bounds: activations from ``batches`` (float32 NCHW arrays, the model's input),
    weights from the weights, both by the observer of ``calib`` (a :class:`CalibrationConfig`, or
    a method name with default options). Returns the per-layer plan ``{name: (w_bit, a_bit) | None}``.
    ``ValueError`` for an unknown method or a scope pattern that matches no layer."""
    calib = _as_calibration(calib)
    act = collect_activation_bounds(net, batches, calib, qcfg.a_bit or 8)
    observer = observer_class(calib.method).from_settings(qcfg.a_bit or 8, calib)
    plan = quantize_model(net, qcfg)
    for name, layer in quant_layers(net):
        layer.act_quant.set_bounds(*act[name])
        lower, upper = observer.weight_bounds(layer.weight.asnumpy(), layer.w_bit or 8, qcfg.w_symmetric)
        layer.weight_quant.set_bounds(lower, upper)
    return plan


__all__ = ["CalibrationConfig", "calibrate", "collect_activation_bounds", "observe_inputs"]
