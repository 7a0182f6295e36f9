"""The uniform affine integer grid: step, zero point, rounding and clamp, in one place.

A ``bits``-bit grid spans ``[lower, upper]`` (real units of the tensor, e.g. pixel values in
[0, 1] for an image input):

- symmetric (weights), narrow range: ``q_max = 2^(b-1) - 1``, ``step = max(upper, eps) / q_max``,
  zero point 0, integers in ``[-q_max, q_max]``;
- asymmetric (activations): the bounds are first widened to contain 0 (``min(lower, 0)``,
  ``max(upper, 0)``), ``q_max = 2^b - 1``, ``step = max(upper - lower, eps) / q_max``, integer
  zero point ``z = clamp(round(-lower / step), 0, q_max)``, integers in ``[0, q_max]``
  (the ONNX QuantizeLinear / DequantizeLinear form, so an int8 export holds the same integers).

``round(v) = floor(v + 0.5)`` (half up; ``ops.round`` exports an ONNX graph onnxruntime rejects).
``x_q = (clamp(round(x / step) + z, q_min, q_max) - z) * step``.

Two forms side by side, with the same operations in the same order so that they agree to
the last bit in the same precision: numpy (``*_np``: :meth:`FakeQuant.grid`, :func:`quantize_np`,
the exporters' integer tensors) and MindSpore ops (``*_ms``: :meth:`FakeQuant.construct`,
whose rounding has a straight-through gradient so the bounds learn, LSQ: Esser et al.,
ICLR 2020). The numpy functions keep the dtype of their inputs (float32 bounds give float32
steps, as the checkpoint's grids; float64 for the calibration search).
"""
import numpy as np
from mindspore import ops

EPS = 1e-8  # smallest step numerator: a zero range still gives a finite step


def q_max_of(bits, symmetric):
    """Largest integer of a ``bits``-bit grid: ``2^(b-1) - 1`` (symmetric, narrow) or ``2^b - 1``."""
    return 2 ** (bits - 1) - 1 if symmetric else 2 ** bits - 1


# ---------------------------------------------------------------- numpy form

def round_np(v):
    """Half-up rounding ``floor(v + 0.5)`` (the grid's rounding), dtype kept."""
    return np.floor(v + 0.5)


def widen_np(lower, upper):
    """``(min(lower, 0), max(upper, 0))``: an asymmetric grid always holds 0 exactly."""
    return np.minimum(lower, 0.0), np.maximum(upper, 0.0)


def step_np(lower, upper, q_max, symmetric):
    """Grid step from (already widened, when asymmetric) bounds; ``upper`` alone when symmetric."""
    if symmetric:
        return np.maximum(upper, EPS) / q_max
    return np.maximum(upper - lower, EPS) / q_max


def zero_point_np(lower, step, q_max):
    """Integer zero point ``clamp(round(-lower / step), 0, q_max)`` (as a float of ``step``'s dtype)."""
    return np.clip(round_np(-lower / step), 0, q_max)


def grid_np(lower, upper, q_max, symmetric):
    """``(step, zero point)`` of the grid over ``[lower, upper]`` (arrays broadcast; zero point 0
    when symmetric). Same dtype as the bounds."""
    if symmetric:
        return step_np(lower, upper, q_max, True), 0
    lower, upper = widen_np(lower, upper)
    step = step_np(lower, upper, q_max, False)
    return step, zero_point_np(lower, step, q_max)


def to_integers_np(x, step, zero, q_min, q_max):
    """``clamp(round(x / step) + zero, q_min, q_max)`` (``zero`` None: symmetric, nothing added);
    float values, cast them to the integer type yourself."""
    q = round_np(x / step)
    if zero is not None:
        q = q + zero
    return np.clip(q, q_min, q_max)


def quantize_np(x, lower, upper, bits, symmetric):
    """``x`` rounded onto the ``bits``-bit grid over ``[lower, upper]`` and back to real values, in float64
    (the reference of :class:`~src.quantlib.fake_quant.FakeQuant`; same shape as ``x``)."""
    x = np.asarray(x, np.float64)
    q_max = q_max_of(bits, symmetric)
    step, zero = grid_np(lower, upper, q_max, symmetric)
    if symmetric:
        return to_integers_np(x, step, None, -q_max, q_max) * step
    return (to_integers_np(x, step, zero, 0, q_max) - zero) * step


def grid_range(scale, zero_point, q_min, q_max):
    """``(scale * (q_min - z), scale * (q_max - z))``: the lowest and highest real value of a per-tensor
    integer grid (Python floats; ``scale`` and ``zero_point`` may be 1-element arrays)."""
    scale, zero = float(np.asarray(scale).reshape(-1)[0]), int(np.asarray(zero_point).reshape(-1)[0])
    return scale * (q_min - zero), scale * (q_max - zero)


# ---------------------------------------------------------------- MindSpore-op form

def round_ste(v):
    """floor(v + 0.5) forward, identity gradient (straight-through estimator)."""
    return v + ops.stop_gradient(ops.floor(v + 0.5) - v)


def symmetric_step_ms(upper, q_max):
    """:func:`step_np` (symmetric) on Tensors: ``max(upper, EPS) / q_max``, same shape as ``upper``."""
    return ops.maximum(upper, EPS) / q_max


def asymmetric_grid_ms(lower, upper, q_max):
    """:func:`grid_np` (asymmetric) on Tensors: ``(step, zero point)``; the zero point's rounding is
    straight-through, so both bounds get a gradient through it."""
    upper = ops.maximum(upper, 0.0)
    lower = ops.minimum(lower, 0.0)
    step = ops.maximum(upper - lower, EPS) / q_max
    return step, ops.clamp(round_ste(-lower / step), 0.0, q_max)


def fake_quantize_symmetric_ms(x, step, q_max):
    """``clamp(round(x / step), -q_max, q_max) * step`` on Tensors (straight-through rounding)."""
    return ops.clamp(round_ste(x / step), -q_max, q_max) * step


def sum_all_ms(t):
    """Sum of every element of a Tensor (rank >= 1) as a 0-d Tensor, reduced in two stages (rows of
    the last one or two axes, then the rest): MindSpore 2.10's CPU kernel reduces a whole tensor at
    once ~10x slower (6 ms against 0.5 ms for 1.8 M float32 values, measured here)."""
    rows = t.reshape(-1, t.shape[-1] * t.shape[-2]) if t.ndim >= 3 else t.reshape(-1, t.shape[-1])
    return ops.reduce_sum(ops.reduce_sum(rows, 1))


def fake_quantize_asymmetric_ms(x, step, zero, q_max):
    """``(clamp(round(x / step) + zero, 0, q_max) - zero) * step`` on Tensors (straight-through rounding)."""
    q = ops.clamp(round_ste(x / step) + zero, 0.0, q_max)
    return (q - zero) * step


__all__ = ["EPS", "q_max_of", "round_np", "widen_np", "step_np", "zero_point_np", "grid_np", "to_integers_np",
           "quantize_np", "grid_range", "round_ste", "symmetric_step_ms", "asymmetric_grid_ms",
           "fake_quantize_symmetric_ms", "fake_quantize_asymmetric_ms", "sum_all_ms"]
