"""ET (equivalent transformation) forms of ABPN and ECBSR (Chao et al., CVPR 2023, "Equivalent
Transformation and Dual Stream Network Construction for Mobile Image Super-Resolution").

ABPN and ECBSR add the input to every sub-pixel channel (the "anchor"). ET keeps
the input alive through the network in extra identity channels (the input is in
[0, 1], so every ReLU/PReLU passes it unchanged), lets ``conv_last`` add it back,
and folds the output clip into ``conv_last`` (computing ``1 - z``) and a 1x1
``conv_clip`` (``-I``, bias 1): ``relu(1 - relu(1 - z)) = clip(z, 0, 1)``.

An ABPN/ECBSR ``M<m>C<c>`` is carried in ``c + 4`` channels (3 identity channels hold the input for
the anchor, 1 zero); ``abpn_et`` keeps ABPN's extra tail conv (3s^2+3 channels at x3, 3s^2+4 otherwise,
as published). The result is a :class:`~src.models.plain.PlainSR` whose output equals
``clip(net(x), 0, 1)`` for inputs in [0, 1] (ABPN already clips). Input and output: RGB in [0, 1], NCHW.
Families ``abpn_et`` and ``ecbsr_et`` (deploy form only; published weights of the ETDS code release).
"""
import numpy as np
from mindspore import Tensor

from src.models import abpn, ecbsr
from src.models.common import add_centre_taps, anchor_pairs, as_float64, block_sizes, conv_float64, set_conv
from src.models.family import Family, register_family
from src.models.plain import PlainSR, map_clip_tail

ET_EXTRA = 4  # identity channels (n_colors) + padding, as published


def abpn_et_widths(num_block, num_feat, scale, n_colors=3):
    """Channel widths of the ET form of ABPN-M<num_block>C<num_feat>: hidden convs, then the tail conv."""
    tail = n_colors * scale * scale + (3 if scale == 3 else 4)
    return [num_feat + ET_EXTRA] * (num_block + 1) + [tail]


def ecbsr_et_widths(num_block, num_feat):
    """Channel widths of the ET form of ECBSR-M<num_block>C<num_feat>."""
    return [num_feat + ET_EXTRA] * (num_block + 1)


def _embed(conv, out_total, in_total, n_colors, carry_from=None, carry_to=None):
    """``conv`` in the top-left block of a bigger conv (float64 numpy), plus identity taps that carry
    ``n_colors`` channels from input index ``carry_from`` to output index ``carry_to``."""
    w, b = conv_float64(conv)
    k = w.shape[2]
    weight, bias = np.zeros((out_total, in_total, k, k)), np.zeros(out_total)
    weight[:w.shape[0], :w.shape[1]] = w
    bias[:w.shape[0]] = b
    if carry_from is not None:
        add_centre_taps(weight, [(carry_to + c, carry_from + c) for c in range(n_colors)])
    return weight, bias


def abpn_to_et(abpn_net):
    """Plain ET form (:class:`PlainSR`) of an :class:`~src.models.abpn.ABPN` (outputs equal to 1e-5)."""
    n = abpn_net.conv_first.in_channels
    feat, m, s = abpn_net.conv_first.out_channels, len(abpn_net.body), abpn_net.scale
    widths = abpn_et_widths(m, feat, s, n)
    plain = PlainSR(s, widths, "relu", n)
    width = widths[0]
    set_conv(plain.conv_first, *_embed(abpn_net.conv_first, width, n, n, 0, feat))
    for i, conv in enumerate(abpn_net.body):
        set_conv(plain.backbone_convs[i], *_embed(conv, width, width, n, feat, feat))
    out_ch = n * s * s
    set_conv(plain.backbone_convs[m], *_embed(abpn_net.conv_up, widths[-1], width, n, feat, out_ch))
    weight, bias = _embed(abpn_net.conv_last, out_ch, widths[-1], n)
    plain.install_clip_tail(add_centre_taps(weight, anchor_pairs(out_ch, n, out_ch)), bias, out_ch)
    return plain


def ecbsr_to_et(ecbsr_plain):
    """Plain ET form (:class:`PlainSR`) of an :class:`~src.models.ecbsr.ECBSRPlain`; output = clip(ECBSR(x), 0, 1)."""
    blocks = list(ecbsr_plain.blocks)
    n = blocks[0].conv.in_channels
    feat, m, s = blocks[0].conv.out_channels, len(blocks) - 1, ecbsr_plain.scale
    widths = ecbsr_et_widths(m, feat)
    width = widths[0]
    plain = PlainSR(s, widths, "prelu", n)
    set_conv(plain.conv_first, *_embed(blocks[0].conv, width, n, n, 0, feat))
    for i, block in enumerate(blocks[1:]):
        set_conv(plain.backbone_convs[i], *_embed(block.conv, width, width, n, feat, feat))
    for block, act in zip(blocks, plain.acts):
        slope = np.ones(width)
        slope[:feat] = as_float64(block.act.w)
        act.w.set_data(Tensor(slope.astype(np.float32)))
    out_ch = n * s * s
    weight, bias = _embed(ecbsr_plain.conv_last, out_ch, width, n)
    plain.install_clip_tail(add_centre_taps(weight, anchor_pairs(out_ch, n, feat)), bias, out_ch)
    return plain


def build_abpn_et(variant, scale, n_colors=3):
    """ET form of ABPN-``variant`` ('M<m>C<c>') as an untrained :class:`PlainSR` (ReLU)."""
    sizes = block_sizes(variant, {}, "abpn_et")
    return PlainSR(scale, abpn_et_widths(sizes["num_block"], sizes["num_feat"], scale, n_colors), "relu", n_colors)


def build_ecbsr_et(variant, scale, n_colors=3):
    """ET form of ECBSR-``variant`` ('M<m>C<c>') as an untrained :class:`PlainSR` (PReLU)."""
    sizes = block_sizes(variant, {}, "ecbsr_et")
    return PlainSR(scale, ecbsr_et_widths(sizes["num_block"], sizes["num_feat"]), "prelu", n_colors)


def torch_map_abpn_et(mapper, net):
    """Published ABPN_ET layout: backbone.0, backbone.{2..M+1}.0, backbone.{M+2}, .{M+4}, .{M+6} (1x1 clip)."""
    hidden = len(net.backbone_convs) - 1
    mapper.conv("conv_first", "backbone.0")
    for i in range(hidden):
        mapper.conv(f"backbone_convs.{i}", f"backbone.{i + 2}.0")
    mapper.conv(f"backbone_convs.{hidden}", f"backbone.{hidden + 2}")
    map_clip_tail(mapper, net, f"backbone.{hidden + 4}", f"backbone.{hidden + 6}")


def torch_map_ecbsr_et(mapper, net):
    """Published ECBSRET layout: backbone.i.0 conv + backbone.i.1 PReLU, then conv_last and 1x1 clip."""
    hidden = len(net.backbone_convs)
    mapper.conv("conv_first", "backbone.0.0")
    mapper.copy("acts.0.w", "backbone.0.1.weight")
    for i in range(hidden):
        mapper.conv(f"backbone_convs.{i}", f"backbone.{i + 1}.0")
        mapper.copy(f"acts.{i + 1}.w", f"backbone.{i + 1}.1.weight")
    map_clip_tail(mapper, net, f"backbone.{hidden + 1}.0", f"backbone.{hidden + 2}.0")


ABPN_ET = register_family(Family("abpn_et", abpn.VARIANTS, abpn.DEFAULT_VARIANT, build_deploy=build_abpn_et,
                                 torch_map=torch_map_abpn_et, equivalent_of=("abpn", abpn_to_et)))
ECBSR_ET = register_family(Family("ecbsr_et", ecbsr.VARIANTS, ecbsr.DEFAULT_VARIANT, build_deploy=build_ecbsr_et,
                                  torch_map=torch_map_ecbsr_et, equivalent_of=("ecbsr", ecbsr_to_et)))
