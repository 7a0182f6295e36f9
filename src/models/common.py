"""Building blocks shared by the SR model families.

Channel order convention: every model ends in MindSpore's ``DepthToSpace``,
whose input channel for sub-pixel (i, j) of colour c is ``(i*s + j)*C + c``
("DCR"). PyTorch's ``PixelShuffle`` uses ``c*s*s + i*s + j`` ("CRD"); weight
conversion permutes the affected conv channels with :func:`crd_to_dcr`.
"""
import numpy as np
from mindspore import Tensor, nn, ops
from src.utils.arrays import as_float64  # noqa: F401  (re-exported for the family files)
from src.errors import UserError


def conv2d(in_ch, out_ch, kernel_size=3, has_bias=True):
    """'Same'-padded stride-1 ``nn.Conv2d``: NCHW (N, in_ch, H, W) -> (N, out_ch, H, W)."""
    return nn.Conv2d(in_ch, out_ch, kernel_size, pad_mode="pad", padding=kernel_size // 2,
                     has_bias=has_bias)


def set_conv(conv, weight, bias):
    """Write numpy ``weight`` (out, in, k, k) and ``bias`` (out,), any float dtype, into ``conv`` as float32."""
    conv.weight.set_data(Tensor(np.ascontiguousarray(weight, np.float32)))
    conv.bias.set_data(Tensor(np.ascontiguousarray(bias, np.float32)))


def conv_float64(conv):
    """``(weight, bias)`` of a conv as float64 numpy: (out, in, k, k) and (out,)."""
    return as_float64(conv.weight), as_float64(conv.bias)


def add_centre_taps(weight, pairs, value=1.0):
    """Add ``value`` at the centre tap of ``weight[o, i]`` (shape (out, in, k, k)) for each ``(o, i)`` in ``pairs``.

    Changes ``weight`` in place and returns it. An (o, i) centre tap of 1 copies input channel i to
    output channel o: identity kernels, the identity channels of the ET forms and anchor taps are all built so.
    """
    k = weight.shape[2]
    for out_ch, in_ch in pairs:
        weight[out_ch, in_ch, k // 2, k // 2] += value
    return weight


def identity_kernel(channels, kernel_size, value=1.0):
    """(channels, channels, k, k) float32 kernel whose 'same' conv is ``value`` times the identity."""
    return add_centre_taps(np.zeros((channels, channels, kernel_size, kernel_size), np.float32),
                           [(c, c) for c in range(channels)], value)


def anchor_pairs(out_ch, n_colors, first_input=0):
    """``(o, i)`` pairs sending colour ``c`` (input channel ``first_input + c``) to every sub-pixel channel of
    that colour: in DCR order sub-pixel k of colour c is output channel ``k * n_colors + c``."""
    return [(ch, first_input + ch % n_colors) for ch in range(out_ch)]


def crd_to_dcr(channels, scale):
    """Index array ``p`` with ``dcr_tensor = crd_tensor[p]`` for ``channels = C*scale**2``.

    Raises ValueError when ``channels`` is not a multiple of ``scale**2``.
    """
    s2 = scale * scale
    if channels % s2:
        raise UserError(f"{channels} channels is not a multiple of scale^2 = {s2}")
    colours = channels // s2
    return np.array([c * s2 + k for k in range(s2) for c in range(colours)], dtype=np.int64)


def shuffle_stages(scale, family):
    """Per-stage depth-to-space factors of a published upsampler: x2 / x3 one stage, x4 two x2 stages.

    Raises ValueError (naming ``family``) for any other scale.
    """
    if scale in (2, 3):
        return [scale]
    if scale == 4:
        return [2, 2]
    raise UserError(f"{family} supports scale 2, 3 or 4, not {scale}")


class PixelShuffle(nn.Cell):
    """Depth-to-space in DCR order (MindSpore's native order, exports to ONNX DepthToSpace).

    (N, C*s*s, H, W) -> (N, C, s*H, s*W). In training mode the same permutation runs as
    reshape + transpose: on CPU that is ~8x faster than the DepthToSpace kernel
    (16x27x64x64: 2.3 vs 18 ms) and its gradient avoids the equally slow SpaceToDepth.
    Inference, evaluation and export (dynamic shapes, ONNX DepthToSpace) use the kernel.
    """

    def __init__(self, scale):
        super().__init__()
        self.scale = int(scale)
        self.d2s = ops.DepthToSpace(scale)

    def construct(self, x):
        if self.training:
            n, channels, h, w = x.shape
            s = self.scale
            c = channels // (s * s)
            y = x.reshape(n, s, s, c, h, w).transpose(0, 3, 4, 1, 5, 2)
            return y.reshape(n, c, h * s, w * s)
        return self.d2s(x)


class Anchor(nn.Cell):
    """The input repeated scale^2 times along channels, in DCR order (every sub-pixel gets its colour):
    (N, C, H, W) -> (N, C*s*s, H, W)."""

    def __init__(self, scale):
        super().__init__()
        self.multiples = (1, scale * scale, 1, 1)

    def construct(self, x):
        return ops.tile(x, self.multiples)


def make_activation(act, channels):
    """``nn.PReLU`` (per-channel slope, initial 0.25) for 'prelu', ``nn.ReLU`` for 'relu'; ValueError otherwise."""
    if act == "prelu":
        return nn.PReLU(channel=channels, w=0.25)
    if act == "relu":
        return nn.ReLU()
    raise UserError(f"act must be 'prelu' or 'relu', not '{act}'")


def block_sizes(variant, table, family, aliases=None):
    """``dict(num_block, num_feat)`` for a named variant in ``table`` (or its alias) or any 'M<m>C<c>' string.

    Raises ValueError when ``variant`` is neither.
    """
    key = str(variant).upper()
    key = (aliases or {}).get(key, key)
    if key in table:
        return dict(table[key])
    num_block, num_feat = parse_mc_variant(variant, family)
    return dict(num_block=num_block, num_feat=num_feat)


def parse_mc_variant(variant, family):
    """Parse 'M4C28' -> (4, 28); ValueError naming ``family`` for anything else."""
    text = str(variant).upper()
    if text.startswith("M") and "C" in text:
        m_str, c_str = text[1:].split("C", 1)
        if m_str.isdigit() and c_str.isdigit():
            return int(m_str), int(c_str)
    raise UserError(f"{family}: variant '{variant}' is not of the form M<blocks>C<channels>, e.g. M4C28")
