"""ETDS inference form (Chao et al., CVPR 2023): the plain net ETDS converts to.

conv_first -> M x (conv3x3 + ReLU) -> conv_last + ReLU -> 1x1 conv_clip + ReLU
-> pixel shuffle. ``conv_clip`` carries the equivalent-transformed clip
``relu(1 - relu(1 - y))``. At x3 one padding channel (27 -> 28) keeps the channel
count a multiple of 4 for mobile kernels; it is dropped before the shuffle.

| variant | ETDS name | M | C (total channels) |
|---------|-----------|---|--------------------|
| M5C16   | ETDS-T    | 5 | 16 |
| M4C32   | ETDS-S    | 4 | 32 |
| M6C32   | ETDS-M    | 6 | 32 |
| M7C48   | ETDS-L    | 7 | 48 |

Input and output: RGB in [0, 1], NCHW.
"""
from mindspore import nn

from src.models.common import PixelShuffle, conv2d, parse_mc_variant

VARIANTS = {
    "M5C16": dict(num_block=5, num_feat=16),
    "M4C32": dict(num_block=4, num_feat=32),
    "M6C32": dict(num_block=6, num_feat=32),
    "M7C48": dict(num_block=7, num_feat=48),
}
ALIASES = {"T": "M5C16", "S": "M4C32", "M": "M6C32", "L": "M7C48"}
DEFAULT_VARIANT = "M4C32"


def padded_channels(n_colors, scale):
    """Output channels of conv_last: C*s^2, plus one padding channel at x3."""
    out_ch = n_colors * scale * scale
    return out_ch + 1 if scale == 3 else out_ch


class ETDSPlain(nn.Cell):
    def __init__(self, scale, num_block=4, num_feat=32, n_colors=3):
        super().__init__()
        self.scale = scale
        self.out_ch = n_colors * scale * scale
        mid = padded_channels(n_colors, scale)
        self.conv_first = conv2d(n_colors, num_feat)
        self.backbone_convs = nn.CellList([conv2d(num_feat, num_feat) for _ in range(num_block)])
        self.conv_last = conv2d(num_feat, mid)
        self.conv_clip = conv2d(mid, mid, kernel_size=1)
        self.relu = nn.ReLU()
        self.upsample = PixelShuffle(scale)
        self.receptive_radius = num_block + 2
        self.peak_channels = max(num_feat, mid)

    def construct(self, x):
        y = self.relu(self.conv_first(x))
        for conv in self.backbone_convs:
            y = self.relu(conv(y))
        y = self.relu(self.conv_clip(self.relu(self.conv_last(y))))
        return self.upsample(y[:, :self.out_ch])


def build(variant, scale, **kwargs):
    key = ALIASES.get(str(variant).upper(), str(variant).upper())
    spec = VARIANTS.get(key)
    if spec is None:
        num_block, num_feat = parse_mc_variant(variant, "etds")
        spec = dict(num_block=num_block, num_feat=num_feat)
    return ETDSPlain(scale, **spec, **kwargs)
