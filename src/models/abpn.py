"""ABPN: anchor-based plain net (Du et al., MAI 2021 mobile SR challenge).

| variant | mid convs (M) | channels (C) | notes                         |
|---------|---------------|--------------|-------------------------------|
| M4C28   | 4             | 28           | published default (33.53 dB Set5 x3) |
| M<m>C<c>| m             | c            | any other width/depth         |

Input and output: RGB in [0, 1], NCHW. The output is clipped to [0, 1].
"""
from mindspore import nn, ops

from src.models.common import Anchor, PixelShuffle, conv2d, mc_spec

VARIANTS = {"M4C28": dict(num_block=4, num_feat=28)}
DEFAULT_VARIANT = "M4C28"


class ABPN(nn.Cell):
    """ABPN: ``n_colors`` x H x W in [0, 1] -> ``n_colors`` x sH x sW, clipped to [0, 1]."""

    def __init__(self, scale, num_block=4, num_feat=28, n_colors=3):
        super().__init__()
        self.scale, self.n_colors = scale, n_colors
        out_ch = n_colors * scale * scale
        self.conv_first = conv2d(n_colors, num_feat)
        self.body = nn.CellList([conv2d(num_feat, num_feat) for _ in range(num_block)])
        self.conv_up = conv2d(num_feat, out_ch)
        self.conv_last = conv2d(out_ch, out_ch)
        self.relu = nn.ReLU()
        self.anchor = Anchor(scale)
        self.upsample = PixelShuffle(scale)
        # Receptive field radius in LR pixels: one per 3x3 conv.
        self.receptive_radius = num_block + 3
        self.peak_channels = max(num_feat, out_ch)

    def construct(self, x):
        y = self.relu(self.conv_first(x))
        for conv in self.body:
            y = self.relu(conv(y))
        y = self.conv_last(self.relu(self.conv_up(y)))
        y = self.upsample(y + self.anchor(x))
        return ops.clamp(y, 0.0, 1.0)

    def equalization_pairs(self):
        """Conv pairs separated only by a ReLU (see src/quantlib/equalize.py)."""
        names = ["conv_first"] + [f"body.{i}" for i in range(len(self.body))] + ["conv_up", "conv_last"]
        return list(zip(names[:-1], names[1:]))


def build(variant, scale, **kwargs):
    return ABPN(scale, **mc_spec(variant, VARIANTS, "abpn"), **kwargs)
