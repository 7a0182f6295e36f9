"""ETDS training form (Chao et al., CVPR 2023): equivalent transformation + dual stream.

Main stream of C - R channels and residual stream of R channels (R = n_colors = 3):

    x = relu(conv_first(in)),        r = relu(conv_residual_first(in))
    M times: x, r = relu(Wb x + Wr2b r), relu(Wr r)
    out = shuffle(conv_last(x)) + shuffle(conv_residual_last(r))

The residual stream starts as an exact nearest-neighbour upsampler: residual convs
are identities, ``Wr2b`` zero, and ``conv_residual_last`` copies colour c to every
sub-pixel. Training uses ``L1(out, gt) + 0.5 L1(r_out, gt)`` (construct the Cell
with ``train_outputs=True`` to get ``(out, r_out)``) and freezes
:meth:`ETDS.residual_parameters` for the first iterations (published: 100k).

:func:`to_deploy` merges both streams into :class:`~src.models.etds_plain.ETDSPlain`
(block-diagonal convs, output clip folded into conv_last/conv_clip, padding
27 -> 28 channels at x3). Variants as in etds_plain.py (C = total channels).
"""
import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops

from src.models.common import PixelShuffle, conv2d, set_conv
from src.models.equivalent import install_clip_tail
from src.models.common import mc_spec
from src.models.etds_plain import ALIASES, DEFAULT_VARIANT, VARIANTS, ETDSPlain  # noqa: F401


class ETDS(nn.Cell):
    def __init__(self, scale, num_block=4, num_feat=32, n_colors=3, num_residual_feat=None, train_outputs=False):
        super().__init__()
        res = num_residual_feat or n_colors
        main = num_feat - res
        if main <= 0 or res < n_colors:
            raise ValueError(f"etds needs num_feat > residual channels >= n_colors; got {num_feat}, {res}")
        self.scale, self.n_colors, self.num_block, self.num_feat, self.res = scale, n_colors, num_block, num_feat, res
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
        s2, n, res = self.scale * self.scale, self.n_colors, self.res

        def set_conv(conv, weight):
            conv.weight.set_data(Tensor(weight, ms.float32))
            conv.bias.set_data(Tensor(np.zeros(weight.shape[0], np.float32)))

        first = np.zeros((res, n, 3, 3), np.float32)
        for c in range(n):
            first[c, c, 1, 1] = 1
        set_conv(self.conv_residual_first, first)
        ident = np.zeros((res, res, 3, 3), np.float32)
        for c in range(res):
            ident[c, c, 1, 1] = 1
        for conv in self.residual_convs:
            set_conv(conv, ident.copy())
        for conv in self.add_residual_convs:
            set_conv(conv, np.zeros(conv.weight.shape, np.float32))
        last = np.zeros((n * s2, res, 3, 3), np.float32)
        for k in range(s2):  # DCR: sub-pixel k of colour c is channel k*n + c
            for c in range(n):
                last[k * n + c, c, 1, 1] = 1
        set_conv(self.conv_residual_last, last)

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


def _w(conv):
    return conv.weight.asnumpy().astype(np.float64), conv.bias.asnumpy().astype(np.float64)


def to_deploy(net):
    """Merge the dual-stream :class:`ETDS` into the plain :class:`ETDSPlain` (same outputs, clipped)."""
    plain = ETDSPlain(net.scale, net.num_block, net.num_feat, net.n_colors)
    main = net.num_feat - net.res
    wf, bf = _w(net.conv_first)
    wrf, brf = _w(net.conv_residual_first)
    set_conv(plain.conv_first, np.concatenate([wf, wrf]), np.concatenate([bf, brf]))
    for i in range(net.num_block):
        wb, bb = _w(net.backbone_convs[i])
        wr, br = _w(net.residual_convs[i])
        wa, ba = _w(net.add_residual_convs[i])
        weight = np.zeros((net.num_feat, net.num_feat, 3, 3))
        weight[:main, :main], weight[:main, main:], weight[main:, main:] = wb, wa, wr
        set_conv(plain.backbone_convs[i], weight, np.concatenate([bb + ba, br]))
    wl, bl = _w(net.conv_last)
    wrl, brl = _w(net.conv_residual_last)
    install_clip_tail(plain, np.concatenate([wl, wrl], axis=1), bl + brl, wl.shape[0])
    return plain


def build(variant, scale, n_colors=3, form="train", train_outputs=False):
    spec = mc_spec(variant, VARIANTS, "etds", ALIASES)
    if form == "deploy":
        return ETDSPlain(scale, **spec, n_colors=n_colors)
    return ETDS(scale, **spec, n_colors=n_colors, train_outputs=train_outputs)
