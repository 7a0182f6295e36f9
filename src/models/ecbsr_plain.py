"""ECBSR inference form (Zhang et al., ACM MM 2021): ECBs re-parameterised to conv3x3 + PReLU.

conv(3->C)+PReLU -> M x (conv(C->C)+PReLU) -> conv(C->3 s^2), plus the input
added to every sub-pixel channel, then pixel shuffle.

| variant | M  | C  |
|---------|----|----|
| M4C8    | 4  | 8  |
| M4C16   | 4  | 16 |
| M4C32   | 4  | 32 |
| M10C32  | 10 | 32 |
| M16C64  | 16 | 64 |

Input and output: RGB in [0, 1], NCHW (output not clipped, as published).
"""
from mindspore import nn

from src.models.common import Anchor, PixelShuffle, conv2d, mc_spec

VARIANTS = {
    "M4C8": dict(num_block=4, num_feat=8),
    "M4C16": dict(num_block=4, num_feat=16),
    "M4C32": dict(num_block=4, num_feat=32),
    "M10C32": dict(num_block=10, num_feat=32),
    "M16C64": dict(num_block=16, num_feat=64),
}
DEFAULT_VARIANT = "M4C16"


class ConvPReLU(nn.Cell):
    def __init__(self, in_ch, out_ch):
        super().__init__()
        self.conv = conv2d(in_ch, out_ch)
        self.act = nn.PReLU(channel=out_ch, w=0.25)

    def construct(self, x):
        return self.act(self.conv(x))


class ECBSRPlain(nn.Cell):
    """ECBSR inference form: ``n_colors`` x H x W in [0, 1] -> ``n_colors`` x sH x sW (not clipped)."""

    def __init__(self, scale, num_block=4, num_feat=16, n_colors=3):
        super().__init__()
        self.scale, self.n_colors = scale, n_colors
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


def build(variant, scale, **kwargs):
    return ECBSRPlain(scale, **mc_spec(variant, VARIANTS, "ecbsr"), **kwargs)
