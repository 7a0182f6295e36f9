"""ECBSR (Zhang et al., "Edge-oriented Convolution Block for Real-time Super Resolution on Mobile
Devices", ACM MM 2021): training form with edge-oriented convolution blocks, deploy form of plain
conv3x3 + PReLU.

Each ECB sums five branches, then applies PReLU (or nothing for the last block):
3x3 conv; 1x1 expand (x depth_multiplier) then 3x3; and 1x1 then a depthwise
scaled Sobel-x, Sobel-y or Laplacian with learnable per-channel scale and bias.
The 1x1 output is padded with its own bias (not zeros) before the 3x3 stage, so
that re-parameterisation into a single 3x3 conv is exact at the borders.

Deploy form (:class:`ECBSRPlain`): conv(3->C)+PReLU -> M x (conv(C->C)+PReLU) -> conv(C->3 s^2),
plus the input added to every sub-pixel channel, then pixel shuffle. :func:`to_deploy`
re-parameterises the training form into it.

| variant | M  | C  |
|---------|----|----|
| M4C8    | 4  | 8  |
| M4C16   | 4  | 16 |
| M4C32   | 4  | 32 |
| M10C32  | 10 | 32 |
| M16C64  | 16 | 64 |

or any M<m>C<c>. Input and output RGB (or Y) in [0, 1], NCHW; no output clip (as published).
"""
import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Normal, initializer

from src.models.base import SRNet
from src.models.common import (Anchor, PixelShuffle, as_float64, block_sizes, conv2d, conv_float64, crd_to_dcr,
                               set_conv)
from src.models.family import Family, register_family
from src.errors import UserError

VARIANTS = {
    "M4C8": dict(num_block=4, num_feat=8),
    "M4C16": dict(num_block=4, num_feat=16),
    "M4C32": dict(num_block=4, num_feat=32),
    "M10C32": dict(num_block=10, num_feat=32),
    "M16C64": dict(num_block=16, num_feat=64),
}
DEFAULT_VARIANT = "M4C16"

_EDGE_MASKS = {
    "sobelx": np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float32),
    "sobely": np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], np.float32),
    "laplacian": np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32),
}


class SeqConv3x3(nn.Cell):
    """1x1 conv, bias-padded, then a 3x3 conv ('conv') or a scaled edge filter ('sobelx', 'sobely',
    'laplacian'): (N, in_ch, H, W) -> (N, out_ch, H, W). ValueError for another ``kind``."""

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
        """Equivalent (3x3 kernel (out, in, 3, 3), bias (out,)) in float64 numpy."""
        k0, b0 = conv_float64(self.conv0)
        k0 = k0[:, :, 0, 0]  # mid, in
        if self.kind == "conv":
            k1, b1 = conv_float64(self.conv1)  # out, mid, 3, 3
            kernel = np.einsum("omkl,mi->oikl", k1, k0)
            return kernel, k1.sum(axis=(2, 3)) @ b0 + b1
        taps = (as_float64(self.scale) * self.mask.asnumpy())[:, 0]  # out, 3, 3
        kernel = taps[:, None] * k0[:, :, None, None]
        return kernel, b0 * taps.sum(axis=(1, 2)) + as_float64(self.bias)


class ECB(nn.Cell):
    """Edge-oriented convolution block: five parallel branches summed, then ``act`` ('prelu', 'relu'
    or 'linear'; ValueError otherwise). (N, in_ch, H, W) -> (N, out_ch, H, W)."""

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
            raise UserError(f"ECB act must be prelu, relu or linear, not '{act}'")

    def construct(self, x):
        y = (self.conv3x3(x) + self.conv1x1_3x3(x) + self.conv1x1_sbx(x) + self.conv1x1_sby(x)
             + self.conv1x1_lpl(x))
        return self.act(y)

    def rep_params(self):
        """The single equivalent 3x3 conv: (kernel (out, in, 3, 3), bias (out,)) in float64 numpy."""
        kernel, bias = conv_float64(self.conv3x3)
        for branch in (self.conv1x1_3x3, self.conv1x1_sbx, self.conv1x1_sby, self.conv1x1_lpl):
            k, b = branch.rep_params()
            kernel, bias = kernel + k, bias + b
        return kernel, bias


class ECBSR(SRNet):
    """Training form: (N, n_colors, H, W) in [0, 1] -> (N, n_colors, sH, sW), not clipped."""

    # each argument is a published hyper-parameter of ECBSR
    def __init__(self, scale, num_block=4, num_feat=16, n_colors=3, act="prelu", depth_multiplier=2.0):
        super().__init__(scale, n_colors)
        self.num_block, self.num_feat = num_block, num_feat
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


class ConvPReLU(nn.Cell):
    """3x3 conv + per-channel PReLU: (N, in_ch, H, W) -> (N, out_ch, H, W)."""

    def __init__(self, in_ch, out_ch):
        super().__init__()
        self.conv = conv2d(in_ch, out_ch)
        self.act = nn.PReLU(channel=out_ch, w=0.25)

    def construct(self, x):
        return self.act(self.conv(x))


class ECBSRPlain(SRNet):
    """Deploy form: (N, n_colors, H, W) in [0, 1] -> (N, n_colors, sH, sW), not clipped."""

    def __init__(self, scale, num_block=4, num_feat=16, n_colors=3):
        super().__init__(scale, n_colors)
        self.blocks = nn.CellList(
            [ConvPReLU(n_colors, num_feat)] + [ConvPReLU(num_feat, num_feat) for _ in range(num_block)])
        self.conv_last = conv2d(num_feat, n_colors * scale * scale)
        self.anchor = Anchor(scale)
        self.upsample = PixelShuffle(scale)
        self.receptive_radius = num_block + 2
        self.peak_channels = max(num_feat, n_colors * scale * scale)

    def construct(self, x):
        y = x
        for block in self.blocks:
            y = block(y)
        return self.upsample(self.conv_last(y) + self.anchor(x))

    def equalization_pairs(self):
        """Conv pairs separated only by a PReLU (see src/quantlib/equalize.py)."""
        names = [f"blocks.{i}.conv" for i in range(len(self.blocks))] + ["conv_last"]
        return list(zip(names[:-1], names[1:]))


def to_deploy(net):
    """Re-parameterise a training-form :class:`ECBSR` into :class:`ECBSRPlain` (same outputs in float)."""
    plain = ECBSRPlain(net.scale, net.num_block, net.num_feat, net.n_colors)
    ecbs = list(net.backbone)
    for ecb, block in zip(ecbs[:-1], plain.blocks):
        set_conv(block.conv, *ecb.rep_params())
        block.act.w.set_data(Tensor(ecb.act.w.asnumpy()))
    set_conv(plain.conv_last, *ecbs[-1].rep_params())
    return plain


def build_train(variant, scale, n_colors=3):
    """:class:`ECBSR` of a named or 'M<m>C<c>' ``variant``."""
    return ECBSR(scale, **block_sizes(variant, VARIANTS, "ecbsr"), n_colors=n_colors)


def build_deploy(variant, scale, n_colors=3):
    """:class:`ECBSRPlain` of a named or 'M<m>C<c>' ``variant``."""
    return ECBSRPlain(scale, **block_sizes(variant, VARIANTS, "ecbsr"), n_colors=n_colors)


def torch_map(mapper, net):
    """ETDS-repository plain ECBSR: backbone.i.0 conv + backbone.i.1 PReLU, then the last conv (CRD -> DCR)."""
    n_blocks = len(net.blocks)
    for i in range(n_blocks):
        mapper.conv(f"blocks.{i}.conv", f"backbone.{i}.0")
        mapper.copy(f"blocks.{i}.act.w", f"backbone.{i}.1.weight")
    perm = crd_to_dcr(net.n_colors * net.scale ** 2, net.scale)
    mapper.conv("conv_last", f"backbone.{n_blocks}.0", out_perm=perm)


FAMILY = register_family(Family("ecbsr", VARIANTS, DEFAULT_VARIANT, build_deploy=build_deploy, build_train=build_train,
                                to_deploy=to_deploy, torch_map=torch_map,
                                input_weight={"train": "backbone.0.conv3x3.weight", "deploy": "blocks.0.conv.weight"}))
