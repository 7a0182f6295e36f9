"""Uniform affine fake quantization with learnable bounds (the quantizer of every quantized layer).

``FakeQuant`` maps x to the nearest point of a ``bits``-bit integer grid and back; the grid
(step, zero point, clamp) is :mod:`src.quantlib.grid`'s:

- symmetric (weights, default): ``s = u / (2^(b-1) - 1)``,
  ``x_q = clamp(round(x / s), -(2^(b-1)-1), 2^(b-1)-1) * s`` (narrow range, zero exact);
- asymmetric (activations): ``s = (u - l) / (2^b - 1)``, integer zero point
  ``z = clamp(round(-l / s), 0, 2^b - 1)``, ``x_q = (clamp(round(x / s) + z, 0, 2^b - 1) - z) * s``
  (the QuantizeLinear/DequantizeLinear form, so an int8 export can be exact).
  Such a grid always contains 0, so the range is kept as ``l <= 0 <= u``: bounds
  are nudged when set, and the forward pass uses ``min(l, 0)`` and ``max(u, 0)``
  (a lower bound above 0 would otherwise silently shrink the range to [0, u - l]).

Rounding is ``floor(v + 0.5)`` (``ops.round`` exports an ONNX graph onnxruntime
rejects) with a straight-through estimator applied to the rounded value only, so
the bounds ``l``/``u`` receive the LSQ gradient through ``s`` and the clamp. Their
gradient is scaled by ``1 / sqrt(n * q_max)`` (LSQ, Esser et al., ICLR 2020), n = elements
per bound, so they learn at a rate comparable to the weights. ``bits`` 0 (or >= 32) disables.
"""
import math
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from src.quantlib.grid import (asymmetric_grid_ms, fake_quantize_asymmetric_ms, fake_quantize_symmetric_ms, grid_np,
                               q_max_of, sum_all_ms, symmetric_step_ms)
from src.errors import UserError

MIN_BITS, MAX_BITS = 2, 8


def scale_grad(t, factor):
    """Value of ``t``, gradient multiplied by ``factor``."""
    return t * factor + ops.stop_gradient(t - t * factor)


def check_bits(bits, what="bits"):
    """``bits`` as an int in [MIN_BITS, MAX_BITS], or 0 for "no quantization" (given as 0 or 32).

    Raises ``ValueError`` naming ``what`` for anything else (e.g. 1000 from a crafted checkpoint,
    which used to mean float silently, or a non-integer).
    """
    if isinstance(bits, bool) or not isinstance(bits, (int, float, str)):
        raise UserError(f"{what} must be an integer bit width, not {bits!r}")
    try:
        value = float(bits)
    except ValueError:
        raise UserError(f"{what} must be an integer bit width, not {bits!r}") from None
    if not math.isfinite(value) or value != int(value):
        raise UserError(f"{what} must be an integer bit width, not {bits!r}")
    bits = int(value)
    if bits in (0, 32):
        return 0
    if not MIN_BITS <= bits <= MAX_BITS:
        raise UserError(f"{what} must be between {MIN_BITS} and {MAX_BITS} (or 0/32 for no quantization), not {bits}")
    return bits


class AsymmetricFakeQuantize(nn.Cell):
    """:func:`~src.quantlib.grid.fake_quantize_asymmetric_ms` with its gradient written out, for a
    per-tensor grid: ``construct(x, step, zero)`` (``x`` any shape of rank >= 1, ``step`` and
    ``zero`` shape (1,)) returns ``(x_q, inside)``, ``x_q = (clamp(floor(x / step + 0.5) + zero, 0,
    q_max) - zero) * step`` (the same operations, so the same values to the bit) and ``inside``
    (1.0 where the clamp did not bind, else 0.0; not differentiated).

    The backward pass is the straight-through/LSQ gradient autodiff gives the op-by-op form
    (tests compare them): ``dx = dy * inside``, ``dstep = sum(dy * x_q - dx * x) / step``,
    ``dzero = (sum(dx) - sum(dy)) * step``. Written by hand because autodiff reduces every
    broadcast scalar's gradient over the whole tensor with MindSpore's slow full reduction
    (four per quantizer); this form needs two fast ones (:func:`~src.quantlib.grid.sum_all_ms`).
    Measured on the ABPN x3 QAT step (batch 16, 64x64): 30 -> about 13 ms per quantizer."""

    def __init__(self, q_max):
        super().__init__()
        self.q_max = float(q_max)

    def construct(self, x, step, zero):
        integers = ops.floor(x / step + 0.5) + zero
        clamped = ops.clamp(integers, 0.0, self.q_max)
        return (clamped - zero) * step, ops.cast(clamped == integers, x.dtype)

    def bprop(self, x, step, zero, out, dout):
        x_q, inside = out
        dy = dout[0]
        dx = dy * inside
        dstep = sum_all_ms(dy * x_q - dx * x) / step
        dzero = (sum_all_ms(dx) - sum_all_ms(dy)) * step
        return dx, dstep.reshape(step.shape), dzero.reshape(zero.shape)


class FakeQuant(nn.Cell):
    """Fake quantizer of one tensor: ``construct(x)`` returns ``x`` (any shape; a weight is
    (out_channels, ...)) rounded onto the grid of its bounds, same shape and dtype.

    ``lower`` / ``upper`` are Parameters in the tensor's units, shape ``(1,)`` (per tensor) or
    ``(channels, 1, 1, 1)`` (per output channel, axis 0 of a conv weight). ``ValueError`` (from
    :func:`check_bits`) for a bit width outside [2, 8] other than 0/32.
    """

    def __init__(self, bits, symmetric=False, channels=0, elements_per_bound=1):
        """``channels`` > 0: one (lower, upper) pair per output channel (axis 0 of a weight);
        ``elements_per_bound``: tensor elements sharing one bound (the LSQ gradient scale)."""
        super().__init__()
        self.bits = check_bits(bits)
        self.enabled = self.bits > 0
        self.symmetric = bool(symmetric)
        shape = (channels, 1, 1, 1) if channels > 0 else (1,)
        self.lower = Parameter(Tensor(np.full(shape, -1.0, np.float32)), name="lower")
        self.upper = Parameter(Tensor(np.full(shape, 1.0, np.float32)), name="upper")
        self.q_max = float(q_max_of(max(self.bits, 2), self.symmetric))
        self.per_tensor = channels <= 0
        self.quantize_asymmetric = AsymmetricFakeQuantize(self.q_max)
        self.grad_factor = float(1.0 / np.sqrt(max(1, elements_per_bound) * self.q_max))

    def set_bounds(self, lower, upper):
        """Set the bounds (scalars or arrays reshaped to the bounds' shape), made valid: symmetric
        ``-u, u`` with ``u = max(|l|, |u|)``; asymmetric ``min(l, 0), max(u, 0)``; ``u >= l + 1e-6``."""
        lower = np.asarray(lower, np.float32).reshape(self.lower.shape)
        upper = np.asarray(upper, np.float32).reshape(self.upper.shape)
        if self.symmetric:
            upper = np.maximum(np.abs(lower), np.abs(upper))
            lower = -upper
        else:
            lower, upper = np.minimum(lower, 0.0), np.maximum(upper, 0.0)
        upper = np.maximum(upper, lower + 1e-6)
        self.lower.set_data(Tensor(lower))
        self.upper.set_data(Tensor(upper))

    def bounds(self):
        """(lower, upper) float32 copies, shaped like the Parameters."""
        return self.lower.asnumpy().copy(), self.upper.asnumpy().copy()

    def grid(self):
        """(step, zero point) as float32 arrays shaped like the bounds: the grid ``construct`` uses
        (zero point 0 when symmetric), for exporters that write integer tensors."""
        lower, upper = self.bounds()
        step, zero = grid_np(lower, upper, self.q_max, self.symmetric)
        step = step.astype(np.float32)
        if self.symmetric:
            return step, np.zeros_like(step, np.float32)
        return step, np.asarray(zero).astype(np.float32)

    def step_ms(self):
        """The grid step as a Tensor shaped like the bounds (no gradient): what an int32 bias is
        rounded with (:class:`~src.quantlib.quant_layers.QuantConv2d`)."""
        if self.symmetric:
            return ops.stop_gradient(symmetric_step_ms(self.upper, self.q_max))
        return ops.stop_gradient(asymmetric_grid_ms(self.lower, self.upper, self.q_max)[0])

    def construct(self, x):
        if not self.enabled:
            return x
        upper = scale_grad(self.upper, self.grad_factor)
        if self.symmetric:
            return fake_quantize_symmetric_ms(x, symmetric_step_ms(upper, self.q_max), self.q_max)
        step, zero = asymmetric_grid_ms(scale_grad(self.lower, self.grad_factor), upper, self.q_max)
        if self.per_tensor:
            return self.quantize_asymmetric(x, step, zero)[0]
        return fake_quantize_asymmetric_ms(x, step, zero, self.q_max)


__all__ = ["FakeQuant", "scale_grad", "check_bits"]
