"""Error-compensating weight rounding (GPTQ / OBQ) on the calibrated weight grid.

Round-to-nearest treats every weight alone. When a layer carries a signal through weights
near 1 (ETDS's merged residual channels pass the LR image through every conv, SESR's and
ECBSR's convs carry it too), the per-channel grid step ``max|w| / 127`` leaves rounding errors
on all the small taps next to the large one, and for smooth images they add up instead of
averaging out: ETDS-M4C32 x3 loses 1.2 dB on Set5 with all weights at 8 bits, nearly all in
the three residual output channels (README, "Quantization sensitivity").

GPTQ (Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
Transformers", ICLR 2023; Optimal Brain Quantization, Frantar & Alistarh, NeurIPS 2022)
rounds the inputs of each output channel one at a time and moves the rounding error onto
the inputs not yet rounded, weighted by the inverse of ``H = sum x x^T`` over the layer's
calibration inputs (im2col columns of a conv), so that ``||(W_q - W) x||^2`` stays small on
the calibration data. The grid (bounds) is the observer's and is not changed: the result is
a weight that lies on that grid, so the fake-quant forward pass and the int8 exporters (which
round ``weight / step``) reproduce exactly the same integers.
"""
import numpy as np
from mindspore import Tensor, nn

from src.quantlib.grid import q_max_of

ROUNDINGS = ("nearest", "gptq")
DAMPING = 0.01  # GPTQ's default: 1 % of the mean diagonal of H added to its diagonal


def supports_gptq(cell):
    """True for a stride-1, dilation-1, ungrouped, zero-padded ``nn.Conv2d`` with an odd square kernel
    (the 'same' convolutions of this zoo) or an ``nn.Dense``; other layers keep round-to-nearest."""
    if isinstance(cell, nn.Dense):
        return True
    if not isinstance(cell, nn.Conv2d):
        return False
    k = cell.kernel_size
    pad = cell.padding if isinstance(cell.padding, int) else None
    same_pad = cell.pad_mode == "same" or (cell.pad_mode == "pad" and pad == k[0] // 2)
    return (k[0] == k[1] and k[0] % 2 == 1 and tuple(cell.stride[-2:]) == (1, 1) and
            tuple(cell.dilation[-2:]) == (1, 1) and cell.group == 1 and same_pad)


def input_columns(x, cell):
    """The rows ``x`` of the layer's input that one output value sees, flattened in the weight's
    (in_channels, kh, kw) order: (N*H*W, C*k*k) float64 for a 'same' conv's NCHW input (zero
    padding), (N, in) for a Dense input."""
    x = np.asarray(x, np.float64)
    if isinstance(cell, nn.Dense):
        return x.reshape(-1, x.shape[-1])
    k = cell.kernel_size[0]
    n, c, h, w = x.shape
    pad = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    cols = np.empty((n, h, w, c, k, k), np.float64)
    for dy in range(k):
        for dx in range(k):
            cols[..., dy, dx] = xp[:, :, dy:dy + h, dx:dx + w].transpose(0, 2, 3, 1)
    return cols.reshape(-1, c * k * k)


def input_hessians(net, layers, batches):
    """``{name: H}``: ``H = sum x x^T`` (float64, (d, d), d = in_channels * k * k) of every
    ``(name, cell)`` in ``layers`` over ``batches`` (float32 NCHW model inputs; float ``net``)."""
    from src.quantlib.calibrate import observe_inputs  # pylint: disable=import-outside-toplevel  (calibrate imports this module)
    cells = dict(layers)
    hessians = {}

    def on_input(name, x):
        cols = input_columns(x, cells[name])
        hessians[name] = hessians.get(name, 0.0) + cols.T @ cols
    observe_inputs(net, layers, on_input, batches)
    return hessians


def gptq_round(weight, step, zero, hessian, q_range, damping=DAMPING):
    """``weight`` (out, ...) rounded onto its per-output-channel grid (``step``, ``zero``: arrays
    broadcastable to (out, 1); integers clamped to ``q_range = (q_min, q_max)``) by GPTQ with the
    input Hessian ``hessian`` (d, d), d = weight elements per output channel. Inputs never seen
    (zero diagonal) get weight 0 as their contribution is 0. Returns float64, shape of ``weight``,
    every value ``(integer - zero) * step``."""
    out = weight.shape[0]
    w = np.asarray(weight, np.float64).reshape(out, -1).copy()
    step = np.asarray(step, np.float64).reshape(out, 1)
    zero = np.asarray(zero, np.float64).reshape(out, 1)
    h = np.array(hessian, np.float64)
    dead = np.diag(h) <= 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h += damping * np.mean(np.diag(h)) * np.eye(len(h))
    upper = np.linalg.cholesky(np.linalg.inv(h)).T  # GPTQ's Cholesky form of H^-1
    result = np.empty_like(w)
    for i in range(w.shape[1]):
        ints = np.clip(np.floor(w[:, i:i + 1] / step + 0.5) + zero, *q_range)
        result[:, i:i + 1] = (ints - zero) * step
        err = (w[:, i] - result[:, i]) / upper[i, i]
        w[:, i + 1:] -= np.outer(err, upper[i, i + 1:])
    return result.reshape(weight.shape)


def round_weights(layers, hessians):
    """Replace the weight of every ``(name, layer)`` in ``layers`` (quantized layers with their bounds
    set and an entry in ``hessians``, see :func:`input_hessians`) by its GPTQ rounding on its own grid."""
    for name, layer in layers:
        quant = layer.weight_quant
        step, zero = quant.grid()
        q_max = q_max_of(quant.bits, quant.symmetric)
        q_range = (-q_max, q_max) if quant.symmetric else (0, q_max)
        rounded = gptq_round(layer.weight.asnumpy(), step, zero, hessians[name], q_range)
        layer.weight.set_data(Tensor(rounded.astype(np.float32)))


__all__ = ["ROUNDINGS", "gptq_round", "input_hessians", "input_columns", "round_weights", "supports_gptq"]
