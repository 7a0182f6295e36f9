"""Post-training calibration: statistics from the float model, bounds into the quantized one.

Activation statistics are collected on the float model (before conversion) with
forward pre-hooks in PyNative mode, keyed by layer name; weights are read
directly. :func:`calibrate` then converts the model and installs the bounds, so
no quantizer has to be switched on or off inside a compiled graph.
"""
import copy
from dataclasses import dataclass

from mindspore import Tensor

from src.quantlib.deploy import SiteStatistics, quantize_deploy
from src.quantlib.observers import observer_class
from src.quantlib.quant_layers import layer_bits, quant_layers, quantizable_layers
from src.quantlib.weight_grid import GRIDS, InputHessians, refine_weight_bounds
from src.utils.hooks import forward_hooks
from src.errors import SettingError, UserError


@dataclass
class CalibrationConfig:
    """How bounds are fitted: observer ``method`` (a key of :data:`~src.quantlib.observers.OBSERVERS`),
    its options (``percentile`` in (0.5, 1], the DBDC clip fraction ``dbdc_p``), the calibration
    ``batch`` (patches per forward pass; statistics are averaged per batch) and ``equalize``
    (cross-layer activation-range equalisation first, :mod:`src.quantlib.equalize`);
    ``equalize_if_pairs``: equalise only a model that declares conv pairs and skip the others
    (a per-bit-width recipe asks for equalisation on every model; a user's explicit
    ``--equalize True`` on a model without pairs is an error);
    ``weight_grid``: ``hessian`` (default: each output channel's weight step chosen to minimise the
    layer's output error on the calibration data, :mod:`src.quantlib.weight_grid`; symmetric
    weights) or ``minmax`` (the observer's weight bounds); ``input_minmax`` (default True): the first
    layer's input, the image (SESR: image - 0.5), is bounded by its min/max over the calibration
    data rather than by the observer, because averaging per-batch clipped bounds (DBDC,
    percentile) clips the dark and bright ends of a whole image (SESR-M5 x2: Y in [0.06, 0.92],
    DBDC bounds [0.12, 0.90], -0.23 dB on Set5). ``ValueError`` for an unknown method or grid."""
    method: str = "dbdc"
    percentile: float = 0.9999
    dbdc_p: float = 1e-4
    batch: int = 2
    equalize: bool = False
    equalize_if_pairs: bool = False
    weight_grid: str = "hessian"
    input_minmax: bool = True

    def __post_init__(self):
        observer_class(self.method)
        if self.weight_grid not in GRIDS:
            raise SettingError("CalibrationConfig", "weight_grid", self.weight_grid, f"one of {list(GRIDS)}")


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


def collect_activation_bounds(net, batches, calib, a_bit=8, input_minmax=False, also=None):
    """``{layer name: (lower, upper)}`` of every quantizable layer's input over ``batches`` (float32
    NCHW arrays), fitted for an ``a_bit`` grid by the observer ``calib`` names (a
    :class:`CalibrationConfig`, or a method name with default options). ``input_minmax``: the
    first quantizable layer (the one that reads the image) gets min/max over all batches
    instead (see :func:`calibrate`). ``also(name, x)``: called with every input too, in the same
    pass. ``ValueError`` for an unknown method."""
    calib = _as_calibration(calib)
    layers = quantizable_layers(net)
    observers = {name: observer_class(calib.method).from_settings(a_bit, calib) for name, _ in layers}
    if input_minmax and layers:
        observers[layers[0][0]] = observer_class("minmax").from_settings(a_bit, calib)
    def collect(name, x):
        observers[name].collect(x)
        if also is not None:
            also(name, x)
    observe_inputs(net, layers, collect, batches)
    return {name: obs.bounds() for name, obs in observers.items()}


def calibrate(net, batches, calib, qcfg):
    """Quantize ``net`` (a float model) in place as ``qcfg`` (:class:`QuantConfig`) says and set every
    quantizer's bounds: activations from ``batches`` (float32 NCHW arrays, the model's input),
    weights from the weights, both by the observer of ``calib`` (a :class:`CalibrationConfig`, or
    a method name with default options), symmetric weight grids then refined as ``calib.weight_grid``
    says; with ``qcfg.placement`` 'deploy' the deployment sites (:mod:`src.quantlib.deploy`) are
    installed and calibrated by the same observer, from the float model's tensors collected in the
    same statistics pass (:class:`~src.quantlib.deploy.SiteStatistics`). Returns the
    per-layer plan ``{name: (w_bit, a_bit) | None}``.
    ``ValueError`` for an unknown method or a scope pattern that matches no layer."""
    calib = _as_calibration(calib)
    hessians = InputHessians(quantizable_layers(net) if calib.weight_grid == "hessian" and qcfg.w_symmetric else [])
    sites = SiteStatistics(net, qcfg.sites if qcfg.placement == "deploy" else [],
                           lambda _site: observer_class(calib.method).from_settings(8, calib))
    with sites.hooks():  # the deployment sites' statistics in the same pass, on the float model
        act = collect_activation_bounds(net, batches, calib, qcfg.a_bit or 8, calib.input_minmax, hessians)
    observer = observer_class(calib.method).from_settings(qcfg.a_bit or 8, calib)
    plan = quantize_deploy(net, qcfg)
    for name, layer in quant_layers(net):
        layer.act_quant.set_bounds(*act[name])
        lower, upper = observer.weight_bounds(layer.weight.asnumpy(), layer.w_bit or 8, qcfg.w_symmetric)
        layer.weight_quant.set_bounds(lower, upper)
    refine_weight_bounds([(n, layer) for n, layer in quant_layers(net) if layer.w_bit and n in hessians.hessians],
                         hessians.hessians)
    sites.apply(net)
    return plan


def restrict_quantization(calibrated, qcfg):
    """A copy of the calibrated model ``calibrated`` in which only the quantizers that ``qcfg``
    (:class:`QuantConfig`) asks for stay on, with the bounds they have in ``calibrated``; every other
    quantizer is switched off (its tensor passes in floating point). No statistics are collected.

    This is how one calibration serves every per-layer configuration (quantization sensitivity):
    without PaC, activation statistics come from the float model, so the bounds of a layer do not
    depend on which other layers are quantized and the result equals calibrating with ``qcfg``
    directly. With PaC the bounds are the ones refined jointly for ``calibrated``'s own plan.

    ``qcfg``'s plan (``layer_bits`` over ``calibrated``'s quantized layers, e.g. ``fp_scope=["*"]`` plus
    a ``bit_table`` for one layer) may keep or drop each weight and input-activation quantizer, not
    change its bit width: ``ValueError`` for a bit width other than the calibrated one (0 = off), or a
    scope pattern matching no layer. Returns the copy (its ``quant_plan`` the effective plan).
    """
    net = copy.deepcopy(calibrated)
    layers = quant_layers(net)
    plan = layer_bits([name for name, _ in layers], qcfg)
    effective = dict(getattr(calibrated, "quant_plan", {}) or {})
    for name, layer in layers:
        bits = plan[name] or (0, 0)
        for quantizer, want, have, what in ((layer.weight_quant, bits[0], layer.w_bit, "w_bit"),
                                            (layer.act_quant, bits[1], layer.a_bit, "a_bit")):
            if want and want != have:
                raise UserError(f"{name}: {what} {want} differs from the calibrated {have}; "
                                 "calibrate with these bit widths instead")
            if not want:
                quantizer.enabled, quantizer.bits = False, 0
        layer.w_bit, layer.a_bit = layer.weight_quant.bits, layer.act_quant.bits
        if getattr(layer, "round_bias", False):  # the int32 bias grid needs both quantizers
            layer.round_bias = bool(layer.w_bit and layer.a_bit)
        effective[name] = (layer.w_bit, layer.a_bit) if layer.w_bit or layer.a_bit else None
    net.quant_plan = effective
    return net


__all__ = ["CalibrationConfig", "calibrate", "collect_activation_bounds", "observe_inputs", "restrict_quantization"]
