"""Hessian-weighted choice of each output channel's weight step (the weight grid), weights unchanged.

Round-to-nearest on the min/max grid (``step = max|w| / q_max`` per output channel) treats every
weight alone. When a layer carries a signal through one weight near 1 and many small ones
(ETDS's merged residual channels pass the LR image through every conv of its deploy form),
the rounding errors of the small taps next to the large one do not average out on smooth
images: ETDS-M4C32 x3 loses 1.2 dB on Set5 with all weights at 8 bits and float
activations, nearly all of it in the three residual output channels (README, "Quantization
sensitivity").

Here each output channel's step is chosen among ``STEPS`` candidates between ``0.5`` and
``1.2`` times the min/max step to minimise the layer's output error on the calibration data,
``e^T H e`` with ``e = w_q - w`` and ``H = sum x x^T`` over the layer's inputs (im2col
columns of a conv) -- the second-order objective of OBQ/GPTQ (Frantar & Alistarh, NeurIPS
2022; Frantar et al., ICLR 2023) and AdaRound (Nagel et al., ICML 2020), restricted to the
grid, as in the Hessian-aware range search of HAWQ-style PTQ. Only the bounds change: the
float weights stay as they are, so a calibrated checkpoint still holds the float model, and the
int8 exporters round ``weight / step`` on the same grid.
"""
import numpy as np
from mindspore import nn

from src.quantlib.grid import q_max_of

GRIDS = ("minmax", "hessian")
STEPS = np.round(np.linspace(0.5, 1.2, 141), 3)  # fractions of max|w| tried as the symmetric bound, step 0.005


def supports_hessian(cell):
    """True for a stride-1, dilation-1, ungrouped, zero-padded ``nn.Conv2d`` with an odd square kernel
    (the 'same' convolutions of this zoo) or an ``nn.Dense``; other layers keep the observer's bounds."""
    if isinstance(cell, nn.Dense):
        return True
    if not isinstance(cell, nn.Conv2d):
        return False
    k = cell.kernel_size
    pad = cell.padding if isinstance(cell.padding, int) else None
    same_pad = cell.pad_mode == "same" or (cell.pad_mode == "pad" and pad == k[0] // 2)
    return (k[0] == k[1] and k[0] % 2 == 1 and tuple(cell.stride[-2:]) == (1, 1) and
            tuple(cell.dilation[-2:]) == (1, 1) and cell.group == 1 and same_pad)


def input_columns(x, cell, rows=None):
    """The rows ``x`` of the layer's input that one output value sees, flattened in the weight's
    (in_channels, kh, kw) order, dtype of ``x``: (N*H*W, C*k*k) for a 'same' conv's NCHW input (zero
    padding; ``rows``: indices into the N*H*W output positions, in N, H, W order, to take only
    those), (N, in) for a Dense input."""
    x = np.asarray(x)
    if isinstance(cell, nn.Dense):
        return x.reshape(-1, x.shape[-1])
    k = cell.kernel_size[0]
    n, c, h, w = x.shape
    pad = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    rows = np.arange(n * h * w) if rows is None else np.asarray(rows)
    i_n, i_y, i_x = np.unravel_index(rows, (n, h, w))
    taps = np.arange(k)
    cols = xp[i_n[:, None, None], :, i_y[:, None, None] + taps[None, :, None], i_x[:, None, None] + taps[None, None, :]]
    return cols.transpose(0, 3, 1, 2).reshape(len(rows), c * k * k)  # (R, k, k, C) -> (R, C*k*k)


class InputHessians:
    """Accumulates ``H = sum x x^T`` (float64, (d, d), d = in_channels * k * k) of the layers
    ``[(name, cell)]`` it is built with (those :func:`supports_hessian` accepts; others ignored):
    call it as ``on_input(name, x)`` with a layer's float input batch; ``hessians`` is the result.
    At most ``max_rows`` output positions per batch are used, drawn with a generator seeded by
    ``seed`` (a 288 x 288 covariance needs far fewer rows than the 8192 of two 64 x 64 patches;
    README: ETDS W8A8 with all rows and with 1024; the draw order follows the calls, so the same
    batches give the same ``H``)."""

    def __init__(self, layers, max_rows=1024, seed=0):
        self.cells = {name: cell for name, cell in layers if supports_hessian(cell)}
        self.hessians = {}
        self.max_rows = int(max_rows)
        self.rng = np.random.default_rng(seed)

    def __call__(self, name, x):
        cell = self.cells.get(name)
        if cell is None:
            return
        x = np.asarray(x, np.float32)
        total = x.shape[0] * x.shape[2] * x.shape[3] if x.ndim == 4 else 0
        rows = np.sort(self.rng.choice(total, self.max_rows, replace=False)) if total > self.max_rows else None
        cols = input_columns(x, cell, rows)
        self.hessians[name] = self.hessians.get(name, 0.0) + (cols.T @ cols).astype(np.float64)


def hessian_steps(weight, hessian, q_max, candidates=None):
    """Per-output-channel symmetric bound ``u`` (float64 (out,); step ``u / q_max``) of ``weight``
    (out, ...) minimising ``e^T H e``, ``e`` the rounding error of the channel on its grid (narrow
    range, ``[-q_max, q_max]``), over ``candidates`` (fractions of ``max|w|``; default
    ``STEPS``). ``hessian``: (d, d), d = weight elements per output channel. An all-zero
    channel keeps ``u = 0`` (the grid's EPS makes it exact)."""
    out = weight.shape[0]
    w = np.asarray(weight, np.float64).reshape(out, -1)
    peak = np.abs(w).max(axis=1)
    best_u, best_loss = peak.copy(), np.full(out, np.inf)
    for fraction in STEPS if candidates is None else candidates:
        u = np.maximum(peak * fraction, 1e-12)
        step = (u / q_max)[:, None]
        err = np.clip(np.floor(w / step + 0.5), -q_max, q_max) * step - w
        loss = np.einsum("oi,ij,oj->o", err, hessian, err)
        better = loss < best_loss
        best_u, best_loss = np.where(better, u, best_u), np.where(better, loss, best_loss)
    return np.where(peak > 0, best_u, 0.0)


def refine_weight_bounds(layers, hessians):
    """Set the weight bounds of every ``(name, layer)`` in ``layers`` (quantized layers with a symmetric
    weight quantizer and an entry in ``hessians``, see :class:`InputHessians`) to :func:`hessian_steps`'s."""
    for name, layer in layers:
        quant = layer.weight_quant
        upper = hessian_steps(layer.weight.asnumpy(), hessians[name], q_max_of(quant.bits, True))
        quant.set_bounds(-upper, upper)


__all__ = ["GRIDS", "InputHessians", "STEPS", "hessian_steps", "input_columns", "refine_weight_bounds",
           "supports_hessian"]
