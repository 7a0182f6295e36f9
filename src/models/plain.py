"""``PlainSR``: a plain conv net whose output clip is folded into two convs (Chao et al., "Equivalent
Transformation and Dual Stream Network Construction for Mobile Image Super-Resolution", CVPR 2023).

conv_first -> hidden 3x3 convs (ReLU or PReLU) -> conv_last + ReLU -> 1x1 ``conv_clip`` + ReLU ->
drop padding channels -> pixel shuffle. With ``conv_last`` computing ``1 - z`` and ``conv_clip`` =
``-I``, bias 1, the tail is ``relu(1 - relu(1 - z)) = clip(z, 0, 1)``. At x3 one padding channel
(27 -> 28) keeps the channel count a multiple of 4 for mobile kernels.

The deploy form of ETDS (src/models/etds.py) and the ET forms of ABPN and ECBSR (src/models/et.py).
"""
import numpy as np
from mindspore import nn

from src.models.base import SRNet
from src.models.common import PixelShuffle, add_centre_taps, conv2d, crd_to_dcr, make_activation, set_conv
from src.errors import UserError


def padded_channels(n_colors, scale):
    """Output channels of conv_last: C*s^2, plus one padding channel at x3."""
    out_ch = n_colors * scale * scale
    return out_ch + 1 if scale == 3 else out_ch


class PlainSR(SRNet):
    """conv_first + hidden convs (``widths[1:]``) + conv_last/conv_clip tail + pixel shuffle:
    (N, n_colors, H, W) -> (N, n_colors, sH, sW), in [0, 1] when the tail holds a clip.

    ``act``: 'relu' or 'prelu' after every hidden conv (ValueError otherwise).
    """

    def __init__(self, scale, widths, act="relu", n_colors=3):
        super().__init__(scale, n_colors)
        self.widths, self.act_type = list(widths), act
        self.out_ch = n_colors * scale * scale
        mid = padded_channels(n_colors, scale)
        self.conv_first = conv2d(n_colors, widths[0])
        self.backbone_convs = nn.CellList([conv2d(a, b) for a, b in zip(widths[:-1], widths[1:])])
        if act not in ("relu", "prelu"):
            raise UserError(f"act must be 'relu' or 'prelu', not '{act}'")
        self.acts = nn.CellList([make_activation(act, w) for w in widths])
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

    def install_clip_tail(self, weight, bias, out_ch):
        """Make the tail compute ``clip(z, 0, 1)`` for ``z = weight * y + bias`` (weight (out_ch, C, k, k),
        bias (out_ch,), float64 numpy): ``1 - z`` in conv_last, the -I / +1 1x1 conv in conv_clip."""
        mid = self.conv_last.out_channels
        w_last, b_last = np.zeros((mid,) + weight.shape[1:]), np.zeros(mid)
        w_last[:out_ch], b_last[:out_ch] = -weight[:out_ch], 1.0 - bias[:out_ch]
        set_conv(self.conv_last, w_last, b_last)
        clip_w = add_centre_taps(np.zeros((mid, mid, 1, 1)), [(c, c) for c in range(out_ch)], -1.0)
        clip_b = np.zeros(mid)
        clip_b[:out_ch] = 1.0
        set_conv(self.conv_clip, clip_w, clip_b)


def map_clip_tail(mapper, net, last, clip):
    """PyTorch weight mapping of the tail: ``last`` -> conv_last, ``clip`` -> conv_clip (CRD -> DCR)."""
    perm = crd_to_dcr(net.out_ch, net.scale)
    mapper.conv("conv_last", last, out_perm=perm)
    mapper.conv("conv_clip", clip, out_perm=perm, in_perm=perm)
