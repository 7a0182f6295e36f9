"""ETDS (Chao et al., "Equivalent Transformation and Dual Stream Network Construction for Mobile Image
Super-Resolution", CVPR 2023): dual-stream training form and plain deploy form.

Main stream of C - R channels and residual stream of R channels (R = n_colors = 3):

    x = relu(conv_first(in)),        r = relu(conv_residual_first(in))
    M times: x, r = relu(Wb x + Wr2b r), relu(Wr r)
    out = shuffle(conv_last(x)) + shuffle(conv_residual_last(r))

The residual stream starts as an exact nearest-neighbour upsampler: residual convs
are identities, ``Wr2b`` zero, and ``conv_residual_last`` copies colour c to every
sub-pixel. Training uses ``L1(out, gt) + 0.5 L1(r_out, gt)`` (with ``train_outputs``
set the Cell returns ``(out, r_out)``) and freezes :meth:`ETDS.residual_parameters`
for the first iterations (published: 100k).

:func:`to_deploy` merges both streams into :class:`ETDSPlain` (block-diagonal convs, output clip
folded into conv_last/conv_clip, padding 27 -> 28 channels at x3).

| variant | ETDS name | M | C (total channels) |
|---------|-----------|---|--------------------|
| M5C16   | ETDS-T    | 5 | 16 |
| M4C32   | ETDS-S    | 4 | 32 |
| M6C32   | ETDS-M    | 6 | 32 |
| M7C48   | ETDS-L    | 7 | 48 |

or any M<m>C<c>. Input and output: RGB (or Y) in [0, 1], NCHW; output clipped.
"""
import numpy as np
from mindspore import nn, ops

from src.models.base import SRNet
from src.models.common import (PixelShuffle, add_centre_taps, anchor_pairs, block_sizes, conv2d, conv_float64,
                               identity_kernel, set_conv)
from src.models.family import Family, register_family
from src.models.plain import PlainSR, map_clip_tail
from src.errors import UserError

VARIANTS = {
    "M5C16": dict(num_block=5, num_feat=16),
    "M4C32": dict(num_block=4, num_feat=32),
    "M6C32": dict(num_block=6, num_feat=32),
    "M7C48": dict(num_block=7, num_feat=48),
}
ALIASES = {"T": "M5C16", "S": "M4C32", "M": "M6C32", "L": "M7C48"}
DEFAULT_VARIANT = "M4C32"


class ETDS(SRNet):
    """Training form: (N, n_colors, H, W) in [0, 1] -> (N, n_colors, sH, sW) clipped to [0, 1], or
    ``(out, r_out)`` unclipped when ``train_outputs`` is set.

    Raises ValueError unless ``num_feat`` > residual channels >= ``n_colors``.
    """

    has_train_outputs = True

    # each argument is a published hyper-parameter of the dual-stream network
    def __init__(self, scale, num_block=4, num_feat=32, n_colors=3, num_residual_feat=None, train_outputs=False):
        super().__init__(scale, n_colors)
        res = num_residual_feat or n_colors
        main = num_feat - res
        if main <= 0 or res < n_colors:
            raise UserError(f"etds needs num_feat > residual channels >= n_colors; got {num_feat}, {res}")
        self.num_block, self.num_feat, self.res = num_block, num_feat, res
        out_ch = n_colors * scale * scale
        self.conv_first = conv2d(n_colors, main)
        self.conv_residual_first = conv2d(n_colors, res)
        self.backbone_convs = nn.CellList([conv2d(main, main) for _ in range(num_block)])
        self.residual_convs = nn.CellList([conv2d(res, res) for _ in range(num_block)])
        self.add_residual_convs = nn.CellList([conv2d(res, main) for _ in range(num_block)])
        self.conv_last = conv2d(main, out_ch)
        self.conv_residual_last = conv2d(res, out_ch)
        self.relu = nn.ReLU()
        self.upsample = PixelShuffle(scale)
        self.train_outputs = train_outputs
        self.receptive_radius = num_block + 2
        self.peak_channels = max(num_feat, out_ch)
        self._init_residual()

    def _init_residual(self):
        """Residual stream = nearest-neighbour upsampling: identity convs, zero cross convs, anchor tail."""
        n, res = self.n_colors, self.res
        zero_bias = lambda conv: np.zeros(conv.weight.shape[0])
        first = add_centre_taps(np.zeros((res, n, 3, 3)), [(c, c) for c in range(n)])
        set_conv(self.conv_residual_first, first, zero_bias(self.conv_residual_first))
        for conv in self.residual_convs:
            set_conv(conv, identity_kernel(res, 3), zero_bias(conv))
        for conv in self.add_residual_convs:
            set_conv(conv, np.zeros(conv.weight.shape), zero_bias(conv))
        out_ch = n * self.scale * self.scale
        last = add_centre_taps(np.zeros((out_ch, res, 3, 3)), anchor_pairs(out_ch, n))
        set_conv(self.conv_residual_last, last, zero_bias(self.conv_residual_last))

    def residual_parameters(self):
        """Parameters of the residual stream (frozen early in training)."""
        prefixes = ("conv_residual_first.", "residual_convs.", "add_residual_convs.", "conv_residual_last.")
        return [p for p in self.trainable_params() if p.name.startswith(prefixes)]

    def construct(self, x):
        y = self.relu(self.conv_first(x))
        r = self.relu(self.conv_residual_first(x))
        for conv, res_conv, add_conv in zip(self.backbone_convs, self.residual_convs, self.add_residual_convs):
            y, r = self.relu(conv(y) + add_conv(r)), self.relu(res_conv(r))
        r_out = self.upsample(self.conv_residual_last(r))
        out = self.upsample(self.conv_last(y)) + r_out
        if self.train_outputs:
            return out, r_out
        return ops.clamp(out, 0.0, 1.0)


class ETDSPlain(PlainSR):
    """ETDS deploy form: M+1 ReLU convs of C channels + clip tail (published parameter names):
    (N, n_colors, H, W) in [0, 1] -> (N, n_colors, sH, sW) clipped to [0, 1] (see :class:`PlainSR`)."""

    def __init__(self, scale, num_block=4, num_feat=32, n_colors=3):
        super().__init__(scale, [num_feat] * (num_block + 1), "relu", n_colors)


def to_deploy(net):
    """Merge the dual-stream :class:`ETDS` into the plain :class:`ETDSPlain` (same outputs, clipped)."""
    plain = ETDSPlain(net.scale, net.num_block, net.num_feat, net.n_colors)
    main = net.num_feat - net.res
    wf, bf = conv_float64(net.conv_first)
    wrf, brf = conv_float64(net.conv_residual_first)
    set_conv(plain.conv_first, np.concatenate([wf, wrf]), np.concatenate([bf, brf]))
    for i in range(net.num_block):
        wb, bb = conv_float64(net.backbone_convs[i])
        wr, br = conv_float64(net.residual_convs[i])
        wa, ba = conv_float64(net.add_residual_convs[i])
        weight = np.zeros((net.num_feat, net.num_feat, 3, 3))
        weight[:main, :main], weight[:main, main:], weight[main:, main:] = wb, wa, wr
        set_conv(plain.backbone_convs[i], weight, np.concatenate([bb + ba, br]))
    wl, bl = conv_float64(net.conv_last)
    wrl, brl = conv_float64(net.conv_residual_last)
    plain.install_clip_tail(np.concatenate([wl, wrl], axis=1), bl + brl, wl.shape[0])
    return plain


def build_train(variant, scale, n_colors=3):
    """:class:`ETDS` of a named, aliased (T/S/M/L) or 'M<m>C<c>' ``variant``."""
    return ETDS(scale, **block_sizes(variant, VARIANTS, "etds", ALIASES), n_colors=n_colors)


def build_deploy(variant, scale, n_colors=3):
    """:class:`ETDSPlain` of a named, aliased (T/S/M/L) or 'M<m>C<c>' ``variant``."""
    return ETDSPlain(scale, **block_sizes(variant, VARIANTS, "etds", ALIASES), n_colors=n_colors)


def torch_map(mapper, net):
    """ETDS-repository plain form: same names; conv_last and conv_clip CRD -> DCR."""
    mapper.conv("conv_first", "conv_first")
    for i in range(len(net.backbone_convs)):
        mapper.conv(f"backbone_convs.{i}", f"backbone_convs.{i}")
    map_clip_tail(mapper, net, "conv_last", "conv_clip")


FAMILY = register_family(Family("etds", VARIANTS, DEFAULT_VARIANT, build_deploy=build_deploy, build_train=build_train,
                                to_deploy=to_deploy, aliases=ALIASES, torch_map=torch_map))
