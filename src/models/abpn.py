"""ABPN: anchor-based plain net (Du et al., "Anchor-based Plain Net for Mobile Image Super-Resolution",
CVPRW 2021, MAI 2021 challenge); layer layout and published weights as in the ETDS code release
(Chao et al., CVPR 2023).

| variant | mid convs (M) | channels (C) | notes                         |
|---------|---------------|--------------|-------------------------------|
| M4C28   | 4             | 28           | published default (33.53 dB Set5 x3) |
| M<m>C<c>| m             | c            | any other width/depth         |

Input and output: RGB (or Y) in [0, 1], NCHW. The output is clipped to [0, 1].
One network serves as training and deploy form.
"""
from mindspore import nn, ops

from src.models.base import SRNet
from src.models.common import Anchor, PixelShuffle, block_sizes, conv2d, crd_to_dcr
from src.models.family import Family, register_family

VARIANTS = {"M4C28": dict(num_block=4, num_feat=28)}
DEFAULT_VARIANT = "M4C28"


class ABPN(SRNet):
    """ABPN: (N, n_colors, H, W) in [0, 1] -> (N, n_colors, sH, sW), clipped to [0, 1].

    conv_first + ReLU, ``num_block`` x (conv + ReLU), conv_up + ReLU, conv_last, plus the input
    repeated on every sub-pixel channel (the anchor), depth-to-space, clip.
    """

    def __init__(self, scale, num_block=4, num_feat=28, n_colors=3):
        super().__init__(scale, n_colors)
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


def build(variant, scale, n_colors=3):
    """:class:`ABPN` of a named or 'M<m>C<c>' ``variant``; ValueError for another variant name."""
    return ABPN(scale, **block_sizes(variant, VARIANTS, "abpn"), n_colors=n_colors)


def torch_map(mapper, net):
    """ETDS-repository ABPN: backbone.0 conv, backbone.{2..M+1}.0 body convs, then conv_up and conv_last
    (CRD -> DCR on the shuffled channels)."""
    perm = crd_to_dcr(net.n_colors * net.scale ** 2, net.scale)
    convs = mapper.indices("backbone.", ".weight")
    mapper.conv("conv_first", "backbone.0")
    for i in range(len(net.body)):
        mapper.conv(f"body.{i}", f"backbone.{i + 2}.0")
    mapper.conv("conv_up", f"backbone.{convs[-2]}", out_perm=perm)
    mapper.conv("conv_last", f"backbone.{convs[-1]}", out_perm=perm, in_perm=perm)


def tf_map(convs, net):
    """The ABPN authors' Keras/TFLite ``base7`` (NJU-Jet/SR_Mobile_Quantization): conv + ReLU, M x (conv + ReLU),
    conv_up + ReLU, conv_last, in that order; their anchor (the input concatenated scale^2 times) and TensorFlow's
    depth-to-space are this network's own DCR order, so no channel permutation. See src/weights/tf_import.py."""
    names = ["conv_first"] + [f"body.{i}" for i in range(len(net.body))] + ["conv_up", "conv_last"]
    return convs.assign(names, [True] * (len(names) - 1) + [False])


FAMILY = register_family(Family("abpn", VARIANTS, DEFAULT_VARIANT, build_deploy=build, build_train=build,
                                torch_map=torch_map, tf_map=tf_map))
