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


def unfold_kernels(channels, k):
    """One-hot kernels: ``conv2d(x, fwd)`` is im2col, ``conv2d(cols, adj)`` its adjoint (col2im).

    ``fwd[c*k*k + i*k + j, c, i, j] = 1`` picks pixel (y+i-p, x+j-p) of channel c;
    ``adj`` is ``fwd`` transposed and spatially flipped.
    """
    fwd = np.zeros((channels * k * k, channels, k, k), np.float32)
    for c in range(channels):
        for i in range(k):
            for j in range(k):
                fwd[c * k * k + i * k + j, c, i, j] = 1.0
    adj = np.ascontiguousarray(fwd.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
    return Tensor(fwd, ms.float32), Tensor(adj, ms.float32)


class AdderFunction(nn.Cell):
    """Stateless adder op with the AdderNet backward (weights passed as an input).

    Built from primitive op instances only: functional wrappers inside a custom
    ``bprop`` fail to compile in MindSpore 2.10 graph mode.
    """

    def __init__(self, in_channels, kernel_size, eta=0.2):
        super().__init__()
        self.k = kernel_size
        self.pad = kernel_size // 2
        self.eta = eta
        self.unfold_w, self.fold_w = unfold_kernels(in_channels, kernel_size)
        cols = in_channels * kernel_size * kernel_size
        self.unfold = ops.Conv2D(cols, kernel_size, pad_mode="pad", pad=self.pad)
        self.fold = ops.Conv2D(in_channels, kernel_size, pad_mode="pad", pad=self.pad)
        self.reduce_sum = ops.ReduceSum()
        self.expand = ops.ExpandDims()
        self.abs = ops.Abs()
        self.sqrt = ops.Sqrt()
        self.maximum = ops.Maximum()
        self.minimum = ops.Minimum()

    def _columns(self, x):
        n, _, h, w = x.shape
        return self.unfold(x, self.unfold_w).reshape(n, -1, h * w)  # N, C*k*k, H*W

    def construct(self, x, weight):
        n, _, h, w = x.shape
        out_ch = weight.shape[0]
        diff = self.expand(self._columns(x), 1) - weight.reshape(1, out_ch, -1, 1)
        return -self.reduce_sum(self.abs(diff), 2).reshape(n, out_ch, h, w)

    def bprop(self, x, weight, out, dout):
        n, _, h, w = x.shape
        out_ch = weight.shape[0]
        diff = self.expand(self._columns(x), 1) - weight.reshape(1, out_ch, -1, 1)  # N, O, CKK, L : X - W
        g = dout.reshape(n, out_ch, 1, h * w)
        dw = self.reduce_sum(diff * g, (0, 3))
        norm = self.maximum(self.sqrt(self.reduce_sum(dw * dw)), 1e-12)
        dw = dw / norm * (self.eta * float(np.sqrt(weight.size)))
        clipped = self.maximum(self.minimum(-diff, 1.0), -1.0)  # HardTanh(W - X)
        dcols = self.reduce_sum(clipped * g, 1).reshape(n, -1, h, w)
        dx = self.fold(dcols, self.fold_w)
        return dx, dw.reshape(weight.shape)


class Adder2D(nn.Cell):
    """Adder layer: (N, in_ch, H, W) -> (N, out_ch, H, W), ``-sum |x - W|`` over a 'same'-padded
    ``kernel_size`` window; ``weight`` (out_ch, in_ch, k, k); ``eta`` the adaptive learning-rate factor."""

    def __init__(self, in_ch, out_ch, kernel_size=3, eta=0.2):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_ch, out_ch, kernel_size
        self.weight = Parameter(initializer(Normal(0.1), (out_ch, in_ch, kernel_size, kernel_size), ms.float32),
                                name="weight")
        self.op = AdderFunction(in_ch, kernel_size, eta)

    def construct(self, x):
        return self.op(x, self.weight)


class AdderBlock(nn.Cell):
    """Training form replacing a SESR 3x3 linear block: BN(adder(x)) + x, (N, C, H, W) -> (N, C, H, W)
    with C = ``channels``; ``eta`` as in :class:`Adder2D`."""

    def __init__(self, channels, kernel_size=3, eta=0.2):
        super().__init__()
        self.adder = Adder2D(channels, channels, kernel_size, eta)
        self.bn = nn.BatchNorm2d(channels, momentum=0.9)

    def construct(self, x):
        return self.bn(self.adder(x)) + x


class AdderDeploy(nn.Cell):
    """Inference form: adder with BatchNorm folded into ``scale * out + shift`` (both (1, C, 1, 1)), plus
    the residual: (N, C, H, W) -> (N, C, H, W) with C = ``channels``."""

    def __init__(self, channels, kernel_size=3):
        super().__init__()
        self.adder = Adder2D(channels, channels, kernel_size)
        self.scale = Parameter(Tensor(np.ones((1, channels, 1, 1), np.float32)), name="scale")
        self.shift = Parameter(Tensor(np.zeros((1, channels, 1, 1), np.float32)), name="shift")

    def construct(self, x):
        return self.adder(x) * self.scale + self.shift + x

    def load_from_block(self, block):
        """Take the adder weights of a trained :class:`AdderBlock` and fold its BatchNorm (moving statistics)."""
        bn = block.bn
        gamma, beta = bn.gamma.asnumpy(), bn.beta.asnumpy()
        mean, var = bn.moving_mean.asnumpy(), bn.moving_variance.asnumpy()
        scale = gamma / np.sqrt(var + bn.eps)
        self.adder.weight.set_data(Tensor(block.adder.weight.asnumpy()))
        self.scale.set_data(Tensor(scale.reshape(1, -1, 1, 1).astype(np.float32)))
        self.shift.set_data(Tensor((beta - mean * scale).reshape(1, -1, 1, 1).astype(np.float32)))
