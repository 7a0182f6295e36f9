"""Plain conv nets with an equivalent-transformed clip: the deploy form of ETDS, and
the ET (equivalent transformation) forms of ABPN and ECBSR.

``PlainSR``: conv_first -> hidden 3x3 convs (ReLU or PReLU) -> conv_last + ReLU ->
1x1 ``conv_clip`` + ReLU -> drop padding channels -> pixel shuffle. With
``conv_last`` computing ``1 - z`` and ``conv_clip`` = ``-I``, bias 1, the tail is
``relu(1 - relu(1 - z)) = clip(z, 0, 1)``. At x3 one padding channel (27 -> 28)
keeps the channel count a multiple of 4 for mobile kernels.

ETDS deploy variants (``etds``):

| variant | ETDS name | M | C (total channels) |
|---------|-----------|---|--------------------|
| M5C16   | ETDS-T    | 5 | 16 |
| M4C32   | ETDS-S    | 4 | 32 |
| M6C32   | ETDS-M    | 6 | 32 |
| M7C48   | ETDS-L    | 7 | 48 |

ET forms (``abpn_et``, ``ecbsr_et``): an ABPN/ECBSR ``M<m>C<c>`` carried in
``c + 4`` channels (3 identity channels hold the input for the anchor, 1 zero);
``abpn_et`` keeps ABPN's extra tail conv (3s^2+3 channels at x3, 3s^2+4 otherwise,
as published). Input and output: RGB in [0, 1], NCHW.
"""
from mindspore import nn

from src.models.common import PixelShuffle, conv2d, mc_spec

VARIANTS = {
    "M5C16": dict(num_block=5, num_feat=16),
    "M4C32": dict(num_block=4, num_feat=32),
    "M6C32": dict(num_block=6, num_feat=32),
    "M7C48": dict(num_block=7, num_feat=48),
}
ALIASES = {"T": "M5C16", "S": "M4C32", "M": "M6C32", "L": "M7C48"}
DEFAULT_VARIANT = "M4C32"
ET_EXTRA = 4  # identity channels (n_colors) + padding, as published


def padded_channels(n_colors, scale):
    """Output channels of conv_last: C*s^2, plus one padding channel at x3."""
    out_ch = n_colors * scale * scale
    return out_ch + 1 if scale == 3 else out_ch


class PlainSR(nn.Cell):
    """conv_first + hidden convs (widths[1:]) + conv_last/conv_clip tail + pixel shuffle."""

    def __init__(self, scale, widths, act="relu", n_colors=3):
        super().__init__()
        self.scale, self.n_colors, self.widths, self.act_type = scale, n_colors, list(widths), act
        self.out_ch = n_colors * scale * scale
        mid = padded_channels(n_colors, scale)
        self.conv_first = conv2d(n_colors, widths[0])
        self.backbone_convs = nn.CellList([conv2d(a, b) for a, b in zip(widths[:-1], widths[1:])])
        if act == "prelu":
            self.acts = nn.CellList([nn.PReLU(channel=w, w=0.25) for w in widths])
        elif act == "relu":
            self.acts = nn.CellList([nn.ReLU() for _ in widths])
        else:
            raise ValueError(f"act must be 'relu' or 'prelu', not '{act}'")
        self.conv_last = conv2d(widths[-1], mid)
        self.conv_clip = conv2d(mid, mid, kernel_size=1)
        self.relu = nn.ReLU()
        self.upsample = PixelShuffle(scale)
        self.receptive_radius = len(widths) + 1
        self.peak_channels = max(max(widths), mid)

    def construct(self, x):
        y = self.acts[0](self.conv_first(x))
        for i, conv in enumerate(self.backbone_convs):
            y = self.acts[i + 1](conv(y))
        y = self.relu(self.conv_clip(self.relu(self.conv_last(y))))
        return self.upsample(y[:, :self.out_ch])

    def equalization_pairs(self):
        """Conv pairs separated only by a ReLU/PReLU (see src/quantlib/equalize.py)."""
        names = (["conv_first"] + [f"backbone_convs.{i}" for i in range(len(self.backbone_convs))]
                 + ["conv_last", "conv_clip"])
        return list(zip(names[:-1], names[1:]))


class ETDSPlain(PlainSR):
    """ETDS inference form: M+1 convs of C channels (published parameter names)."""

    def __init__(self, scale, num_block=4, num_feat=32, n_colors=3):
        super().__init__(scale, [num_feat] * (num_block + 1), "relu", n_colors)


def abpn_et_widths(num_block, num_feat, scale, n_colors=3):
    tail = n_colors * scale * scale + (3 if scale == 3 else 4)
    return [num_feat + ET_EXTRA] * (num_block + 1) + [tail]


def ecbsr_et_widths(num_block, num_feat):
    return [num_feat + ET_EXTRA] * (num_block + 1)


def build(variant, scale, n_colors=3):
    return ETDSPlain(scale, **mc_spec(variant, VARIANTS, "etds", ALIASES), n_colors=n_colors)


def build_abpn_et(variant, scale, n_colors=3):
    spec = mc_spec(variant, {}, "abpn_et")
    return PlainSR(scale, abpn_et_widths(spec["num_block"], spec["num_feat"], scale, n_colors), "relu", n_colors)


def build_ecbsr_et(variant, scale, n_colors=3):
    spec = mc_spec(variant, {}, "ecbsr_et")
    return PlainSR(scale, ecbsr_et_widths(spec["num_block"], spec["num_feat"]), "prelu", n_colors)
