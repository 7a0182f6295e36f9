"""Post-training calibration: statistics from the float model, bounds into the quantized one.

Activation statistics are collected on the float model (before conversion) with
forward pre-hooks in PyNative mode, keyed by layer name; weights are read
directly. :func:`calibrate` then converts the model and installs the bounds, so
no quantizer has to be switched on or off inside a compiled graph.
"""
import mindspore as ms
from mindspore import Tensor

from src.quantlib.convert import quant_layers, quantizable_layers, quantize_model
from src.quantlib.observers import METHODS, ActivationObserver, weight_bounds


def observe_inputs(net, layers, on_input, batches):
    """Run ``net`` (eval mode, PyNative) over ``batches`` and call ``on_input(name, array)`` with the
    input of every ``(name, cell)`` in ``layers``."""
    handles = []
    for name, layer in layers:
        def hook(_cell, inputs, _name=name):
            on_input(_name, inputs[0].asnumpy())
        handles.append(layer.register_forward_pre_hook(hook))
    previous_mode = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        net.set_train(False)
        for batch in batches:
            net(Tensor(batch))
    finally:
        for handle in handles:
            handle.remove()
        ms.set_context(mode=previous_mode)


def collect_activation_bounds(net, batches, method, a_bit=8, percentile=0.9999, dbdc_p=1e-4):
    """``{layer name: (lower, upper)}`` of every quantizable layer's input over ``batches``."""
    if method not in METHODS:
        raise ValueError(f"unknown quant_method '{method}'; choose one of {METHODS}")
    layers = quantizable_layers(net)
    observers = {name: ActivationObserver(method, a_bit, percentile, dbdc_p) for name, _ in layers}
    observe_inputs(net, layers, lambda name, x: observers[name].update(x), batches)
    return {name: obs.bounds() for name, obs in observers.items()}


def calibrate(net, batches, method, qcfg, percentile=0.9999, dbdc_p=1e-4):
    """Quantize ``net`` in place and set every quantizer's bounds; returns the per-layer plan."""
    act = collect_activation_bounds(net, batches, method, qcfg.a_bit or 8, percentile, dbdc_p)
    plan = quantize_model(net, qcfg)
    for name, layer in quant_layers(net):
        layer.act_quant.set_bounds(*act[name])
        lower, upper = weight_bounds(layer.weight.asnumpy(), method, layer.w_bit or 8, qcfg.w_symmetric)
        layer.weight_quant.set_bounds(lower, upper)
    return plan
