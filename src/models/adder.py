"""Adder layers (AdderNet, Chen et al. CVPR 2020) for AdderSESR.

Forward: ``out[n, o, y, x] = -sum_{c, i, j} |x_pad[n, c, y+i, x+j] - W[o, c, i, j]|``
(zero padding, stride 1).

Backward (published AdderNet rule, not the true sign gradient):
- weights: full-precision ``dW = sum (X - W) * dout``, then rescaled by the
  adaptive learning-rate factor ``eta * sqrt(numel(W)) / ||dW||_2``;
- inputs: ``dX = sum HardTanh(W - X) * dout``.
Both are the gradients of the L2 surrogate ``-1/2 sum (X - W)^2`` (the input
one clipped to [-1, 1]); ``tests/test_adder.py`` checks them numerically.

:class:`AdderBlock` (training) = adder 3x3 + BatchNorm + short residual.
:class:`AdderDeploy` = adder 3x3 with BatchNorm folded into a per-channel
scale and shift (and the residual kept as an add).
"""
import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Normal, initializer


def _columns(x, k, pad):
    """(N, C, H, W) -> (N, C*k*k, H*W) sliding k x k windows over the zero-padded input."""
    n, c, h, w = x.shape
    xp = ops.pad(x, (pad, pad, pad, pad))
    patches = [xp[:, :, i:i + h, j:j + w] for i in range(k) for j in range(k)]
    return ops.stack(patches, axis=2).reshape(n, c * k * k, h * w)


def _fold(cols, c, h, w, k, pad):
    """Adjoint of :func:`_columns`: (N, C*k*k, H*W) -> (N, C, H, W)."""
    n = cols.shape[0]
    cols = cols.reshape(n, c, k * k, h, w)
    out = ops.zeros((n, c, h + 2 * pad, w + 2 * pad), cols.dtype)
    for i in range(k):
        for j in range(k):
            out = out + ops.pad(cols[:, :, i * k + j], (j, 2 * pad - j, i, 2 * pad - i))
    return out[:, :, pad:pad + h, pad:pad + w]


class AdderFunction(nn.Cell):
    """Stateless adder op with the AdderNet backward (weights passed as an input)."""

    def __init__(self, kernel_size, eta=0.2):
        super().__init__()
        self.k = kernel_size
        self.pad = kernel_size // 2
        self.eta = eta

    def construct(self, x, weight):
        n, _, h, w = x.shape
        out_ch = weight.shape[0]
        cols = _columns(x, self.k, self.pad)  # N, CKK, L
        wc = weight.reshape(out_ch, -1)
        dist = ops.abs(ops.expand_dims(cols, 1) - wc.reshape(1, out_ch, -1, 1)).sum(axis=2)
        return (-dist).reshape(n, out_ch, h, w)

    def bprop(self, x, weight, out, dout):
        n, c, h, w = x.shape
        out_ch = weight.shape[0]
        cols = _columns(x, self.k, self.pad)
        wc = weight.reshape(out_ch, -1)
        diff = ops.expand_dims(cols, 1) - wc.reshape(1, out_ch, -1, 1)  # N, O, CKK, L : X - W
        g = dout.reshape(n, out_ch, 1, h * w)
        dw = (diff * g).sum(axis=(0, 3))
        norm = ops.maximum(ops.sqrt((dw * dw).sum()), 1e-12)
        dw = dw / norm * (self.eta * float(np.sqrt(weight.size)))
        dcols = (ops.clamp(-diff, -1.0, 1.0) * g).sum(axis=1)
        dx = _fold(dcols, c, h, w, self.k, self.pad)
        return dx, dw.reshape(weight.shape)


class Adder2D(nn.Cell):
    def __init__(self, in_ch, out_ch, kernel_size=3, eta=0.2):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_ch, out_ch, kernel_size
        self.weight = Parameter(initializer(Normal(0.1), (out_ch, in_ch, kernel_size, kernel_size), ms.float32),
                                name="weight")
        self.op = AdderFunction(kernel_size, eta)

    def construct(self, x):
        return self.op(x, self.weight)


class AdderBlock(nn.Cell):
    """Training form replacing a SESR 3x3 linear block: BN(adder(x)) + x."""

    def __init__(self, channels, kernel_size=3, eta=0.2):
        super().__init__()
        self.adder = Adder2D(channels, channels, kernel_size, eta)
        self.bn = nn.BatchNorm2d(channels, momentum=0.9)

    def construct(self, x):
        return self.bn(self.adder(x)) + x


class AdderDeploy(nn.Cell):
    """Inference form: adder with BatchNorm folded into ``scale * out + shift``, plus the residual."""

    def __init__(self, channels, kernel_size=3):
        super().__init__()
        self.adder = Adder2D(channels, channels, kernel_size)
        self.scale = Parameter(Tensor(np.ones((1, channels, 1, 1), np.float32)), name="scale")
        self.shift = Parameter(Tensor(np.zeros((1, channels, 1, 1), np.float32)), name="shift")

    def construct(self, x):
        return self.adder(x) * self.scale + self.shift + x

    def load_from_block(self, block):
        bn = block.bn
        gamma, beta = bn.gamma.asnumpy(), bn.beta.asnumpy()
        mean, var = bn.moving_mean.asnumpy(), bn.moving_variance.asnumpy()
        scale = gamma / np.sqrt(var + bn.eps)
        self.adder.weight.set_data(Tensor(block.adder.weight.asnumpy()))
        self.scale.set_data(Tensor(scale.reshape(1, -1, 1, 1).astype(np.float32)))
        self.shift.set_data(Tensor((beta - mean * scale).reshape(1, -1, 1, 1).astype(np.float32)))
