"""ECBSR training form (Zhang et al., ACM MM 2021): edge-oriented convolution blocks.

Each ECB sums five branches, then applies PReLU (or nothing for the last block):
3x3 conv; 1x1 expand (x depth_multiplier) then 3x3; and 1x1 then a depthwise
scaled Sobel-x, Sobel-y or Laplacian with learnable per-channel scale and bias.
The 1x1 output is padded with its own bias (not zeros) before the 3x3 stage, so
that re-parameterisation into a single 3x3 conv is exact at the borders.

Variants (M blocks, C channels) as listed in ecbsr_plain.py: M4C8, M4C16 (default),
M4C32, M10C32, M16C64, or any M<m>C<c>.

:func:`to_deploy` re-parameterises into :class:`~src.models.ecbsr_plain.ECBSRPlain`
(conv3x3 + PReLU). Input and output RGB (or Y) in [0, 1]; no output clip.
"""
import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Normal, initializer

from src.models.common import Anchor, PixelShuffle, conv2d, mc_spec, set_conv
from src.models.ecbsr_plain import VARIANTS, DEFAULT_VARIANT, ECBSRPlain  # noqa: F401

_EDGE_MASKS = {
    "sobelx": np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float32),
    "sobely": np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], np.float32),
    "laplacian": np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32),
}


class SeqConv3x3(nn.Cell):
    """1x1 conv, bias-padded, then a 3x3 conv ('conv') or a scaled edge filter."""

    def __init__(self, kind, in_ch, out_ch, depth_multiplier=2.0):
        super().__init__()
        self.kind, self.out_ch = kind, out_ch
        # the Pad primitive, not ops.pad: in graph mode on CPU (MindSpore 2.10) the gradient of
        # ops.pad is wrong from the second call of a compiled graph on (it differs from run to run)
        self.pad = ops.Pad(((0, 0), (0, 0), (1, 1), (1, 1)))
        if kind == "conv":
            self.mid = int(out_ch * depth_multiplier)
            self.conv0 = conv2d(in_ch, self.mid, 1)
            self.conv1 = nn.Conv2d(self.mid, out_ch, 3, pad_mode="valid", has_bias=True)
        elif kind in _EDGE_MASKS:
            self.mid = out_ch
            self.conv0 = conv2d(in_ch, out_ch, 1)
            self.scale = Parameter(initializer(Normal(1e-3), (out_ch, 1, 1, 1), ms.float32), name="scale")
            self.bias = Parameter(initializer(Normal(1e-3), (out_ch,), ms.float32), name="bias")
            self.mask = Tensor(np.tile(_EDGE_MASKS[kind][None, None], (out_ch, 1, 1, 1)), ms.float32)
        else:
            raise ValueError(f"unknown SeqConv3x3 kind '{kind}'")

    def construct(self, x):
        y0 = self.conv0(x)
        b0 = self.conv0.bias.reshape(1, -1, 1, 1)
        y0 = self.pad(y0 - b0) + b0  # border = bias, interior = y0
        if self.kind == "conv":
            return self.conv1(y0)
        y1 = ops.conv2d(y0, self.scale * self.mask, None, 1, "valid", 0, 1, self.out_ch)
        return y1 + self.bias.reshape(1, -1, 1, 1)

    def rep_params(self):
        """Equivalent (3x3 kernel, bias) in float64 numpy."""
        k0 = self.conv0.weight.asnumpy().astype(np.float64)[:, :, 0, 0]  # mid, in
        b0 = self.conv0.bias.asnumpy().astype(np.float64)
        if self.kind == "conv":
            k1 = self.conv1.weight.asnumpy().astype(np.float64)  # out, mid, 3, 3
            b1 = self.conv1.bias.asnumpy().astype(np.float64)
            kernel = np.einsum("omkl,mi->oikl", k1, k0)
            return kernel, k1.sum(axis=(2, 3)) @ b0 + b1
        taps = (self.scale.asnumpy().astype(np.float64) * self.mask.asnumpy())[:, 0]  # out, 3, 3
        kernel = taps[:, None] * k0[:, :, None, None]
        return kernel, b0 * taps.sum(axis=(1, 2)) + self.bias.asnumpy().astype(np.float64)


class ECB(nn.Cell):
    def __init__(self, in_ch, out_ch, depth_multiplier=2.0, act="prelu"):
        super().__init__()
        self.conv3x3 = conv2d(in_ch, out_ch, 3)
        self.conv1x1_3x3 = SeqConv3x3("conv", in_ch, out_ch, depth_multiplier)
        self.conv1x1_sbx = SeqConv3x3("sobelx", in_ch, out_ch)
        self.conv1x1_sby = SeqConv3x3("sobely", in_ch, out_ch)
        self.conv1x1_lpl = SeqConv3x3("laplacian", in_ch, out_ch)
        self.act_type = act
        if act == "prelu":
            self.act = nn.PReLU(channel=out_ch, w=0.25)
        elif act == "relu":
            self.act = nn.ReLU()
        elif act == "linear":
            self.act = nn.Identity()
        else:
            raise ValueError(f"ECB act must be prelu, relu or linear, not '{act}'")

    def construct(self, x):
        y = (self.conv3x3(x) + self.conv1x1_3x3(x) + self.conv1x1_sbx(x) + self.conv1x1_sby(x)
             + self.conv1x1_lpl(x))
        return self.act(y)

    def rep_params(self):
        kernel = self.conv3x3.weight.asnumpy().astype(np.float64)
        bias = self.conv3x3.bias.asnumpy().astype(np.float64)
        for branch in (self.conv1x1_3x3, self.conv1x1_sbx, self.conv1x1_sby, self.conv1x1_lpl):
            k, b = branch.rep_params()
            kernel, bias = kernel + k, bias + b
        return kernel, bias


class ECBSR(nn.Cell):
    def __init__(self, scale, num_block=4, num_feat=16, n_colors=3, act="prelu", depth_multiplier=2.0):
        super().__init__()
        self.scale, self.n_colors, self.num_block, self.num_feat = scale, n_colors, num_block, num_feat
        blocks = [ECB(n_colors, num_feat, depth_multiplier, act)]
        blocks += [ECB(num_feat, num_feat, depth_multiplier, act) for _ in range(num_block)]
        blocks += [ECB(num_feat, n_colors * scale * scale, depth_multiplier, "linear")]
        self.backbone = nn.SequentialCell(blocks)
        self.anchor = Anchor(scale)
        self.upsample = PixelShuffle(scale)
        self.receptive_radius = num_block + 2
        self.peak_channels = max(2 * num_feat, n_colors * scale * scale * 2)

    def construct(self, x):
        return self.upsample(self.backbone(x) + self.anchor(x))


def to_deploy(net):
    """Re-parameterise a training-form :class:`ECBSR` into :class:`ECBSRPlain`."""
    plain = ECBSRPlain(net.scale, net.num_block, net.num_feat, net.n_colors)
    ecbs = list(net.backbone)
    for ecb, block in zip(ecbs[:-1], plain.blocks):
        set_conv(block.conv, *ecb.rep_params())
        block.act.w.set_data(Tensor(ecb.act.w.asnumpy()))
    set_conv(plain.conv_last, *ecbs[-1].rep_params())
    return plain


def build(variant, scale, n_colors=3, form="train"):
    spec = mc_spec(variant, VARIANTS, "ecbsr")
    if form == "deploy":
        return ECBSRPlain(scale, **spec, n_colors=n_colors)
    return ECBSR(scale, **spec, n_colors=n_colors)
