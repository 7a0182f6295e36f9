"""Cross-layer activation-range equalisation, an optional step before calibration.

For two convolutions ``A -> act -> B`` where ``act`` is ReLU or PReLU and A's output feeds
nothing else, dividing A's output channel ``c`` (weights and bias) by ``s_c > 0`` and
multiplying B's input channel ``c`` by ``s_c`` leaves the float model unchanged, because
``act(x / s) = act(x) / s`` for both activations. It does change what the per-tensor
activation grid between A and B has to cover. With ``s_c = r_c / geomean(r)``, where
``r_c`` is the largest |value| of channel ``c`` of B's input over the calibration
batches, every channel spans the same range, so one 8-bit grid serves them all alike.
A's per-channel weight grids are unaffected (each output channel is scaled as a whole);
B's per-output-channel weight grids now see rescaled input channels. This is the
equalisation of Nagel et al. (ICCV 2019, "Data-free quantization") applied to activation
ranges instead of weight ranges.

Models list the pairs that satisfy the condition with ``equalization_pairs()``
(names of the two Conv2d cells); a model without such pairs cannot be equalised.
Measured on ABPN-M4C28 x3 W8A8 (README): DBDC Set5 33.44 -> 33.49.
"""
import numpy as np
from mindspore import Tensor, nn

from src.quantlib.calibrate import observe_inputs
from src.utils.arrays import as_float64
from src.errors import UserError


def equalization_pairs(net):
    """``net.equalization_pairs()``: ``[(producer, consumer)]`` Conv2d names; ``ValueError`` if none."""
    pairs = list(net.equalization_pairs())
    if not pairs:
        raise UserError(f"{type(net).__name__} has no ReLU/PReLU-separated conv pairs to equalise; "
                         "set --equalize False")
    return pairs


def _convs(net):
    return {name: cell for name, cell in net.cells_and_names() if isinstance(cell, nn.Conv2d)}


def channel_ranges(net, pairs, batches):
    """``{consumer name: max |input| per channel}`` over ``batches`` (float model, PyNative)."""
    convs = _convs(net)
    ranges = {}

    def on_input(name, x):
        ranges[name] = np.maximum(ranges.get(name, 0.0), np.abs(x).max(axis=(0, 2, 3)))
    observe_inputs(net, [(consumer, convs[consumer]) for _, consumer in pairs], on_input, batches)
    return ranges


def equalization_scales(ranges, floor=1e-6):
    """``s_c = r_c / geomean(r)`` over the live channels; dead channels (range <= floor) keep 1."""
    scales = {}
    for name, r in ranges.items():
        r = np.asarray(r, np.float64)
        live = r > floor
        s = np.ones_like(r)
        if live.any():
            s[live] = r[live] / np.exp(np.mean(np.log(r[live])))
        scales[name] = s
    return scales


def apply_equalization(net, pairs, scales):
    """Rescale ``net``'s weights in place with ``{consumer: s}`` (the float function is unchanged)."""
    convs = _convs(net)
    for producer, consumer in pairs:
        s = scales[consumer]
        a, b = convs[producer], convs[consumer]
        if a.out_channels != len(s) or b.in_channels != len(s) or b.group != 1:
            raise UserError(f"cannot equalise {producer} -> {consumer}: {a.out_channels} outputs feed "
                             f"{b.in_channels} inputs (group {b.group})")
        wa = as_float64(a.weight) / s[:, None, None, None]
        a.weight.set_data(Tensor(wa.astype(np.float32)))
        if a.has_bias:
            a.bias.set_data(Tensor((as_float64(a.bias) / s).astype(np.float32)))
        wb = as_float64(b.weight) * s[None, :, None, None]
        b.weight.set_data(Tensor(wb.astype(np.float32)))


def equalize(fp_net, batches, others=()):
    """Equalise ``fp_net`` from its activation ranges over ``batches``, and ``others`` (copies of
    the same float model, e.g. the one about to be quantized) with the same scales.
    Returns ``{consumer: scales}``."""
    pairs = equalization_pairs(fp_net)
    scales = equalization_scales(channel_ranges(fp_net, pairs, batches))
    for net in (fp_net, *others):
        apply_equalization(net, pairs, scales)
    return scales


__all__ = ["equalize", "equalization_pairs", "channel_ranges", "equalization_scales", "apply_equalization"]
