"""Equivalent transformation (ET) of anchor-based nets into plain conv nets.

ABPN and ECBSR add the input to every sub-pixel channel (the "anchor"). ET keeps
the input alive through the network in extra identity channels (the input is in
[0, 1], so every ReLU/PReLU passes it unchanged), lets ``conv_last`` add it back,
and folds the output clip into ``conv_last`` (computing ``1 - z``) and a 1x1
``conv_clip`` (``-I``, bias 1): ``relu(1 - relu(1 - z)) = clip(z, 0, 1)``.

The result is a :class:`~src.models.etds_plain.PlainSR` whose output equals
``clip(net(x), 0, 1)`` for inputs in [0, 1] (ABPN already clips).
"""
import numpy as np
from mindspore import Tensor

from src.models.common import set_conv
from src.models.etds_plain import PlainSR, abpn_et_widths, ecbsr_et_widths


def _np(p):
    return p.asnumpy().astype(np.float64)


def _embed(conv, out_total, in_total, n_colors, carry_from=None, carry_to=None):
    """``conv`` in the top-left block of a bigger conv, plus identity taps that carry
    ``n_colors`` channels from input index ``carry_from`` to output index ``carry_to``."""
    w, b = _np(conv.weight), _np(conv.bias)
    k = w.shape[2]
    weight, bias = np.zeros((out_total, in_total, k, k)), np.zeros(out_total)
    weight[:w.shape[0], :w.shape[1]] = w
    bias[:w.shape[0]] = b
    if carry_from is not None:
        for c in range(n_colors):
            weight[carry_to + c, carry_from + c, k // 2, k // 2] = 1.0
    return weight, bias


def install_clip_tail(plain, weight, bias, out_ch):
    """Install z = weight * y + bias as 1 - z in conv_last, and the -I/+1 clip conv."""
    mid = plain.conv_last.out_channels
    w_last, b_last = np.zeros((mid,) + weight.shape[1:]), np.zeros(mid)
    w_last[:out_ch], b_last[:out_ch] = -weight[:out_ch], 1.0 - bias[:out_ch]
    set_conv(plain.conv_last, w_last, b_last)
    clip_w, clip_b = np.zeros((mid, mid, 1, 1)), np.zeros(mid)
    for c in range(out_ch):
        clip_w[c, c, 0, 0], clip_b[c] = -1.0, 1.0
    set_conv(plain.conv_clip, clip_w, clip_b)


def _anchor_taps(weight, out_ch, n_colors, carry_from):
    """Add the identity channels to every sub-pixel channel (DCR: channel k*n + c gets colour c)."""
    k = weight.shape[2]
    for ch in range(out_ch):
        weight[ch, carry_from + ch % n_colors, k // 2, k // 2] += 1.0
    return weight


def abpn_to_et(abpn):
    """Plain ET form of an :class:`~src.models.abpn.ABPN` (outputs equal to 1e-5)."""
    n = abpn.conv_first.in_channels
    feat, m, s = abpn.conv_first.out_channels, len(abpn.body), abpn.scale
    widths = abpn_et_widths(m, feat, s, n)
    plain = PlainSR(s, widths, "relu", n)
    width = widths[0]
    set_conv(plain.conv_first, *_embed(abpn.conv_first, width, n, n, 0, feat))
    for i, conv in enumerate(abpn.body):
        set_conv(plain.backbone_convs[i], *_embed(conv, width, width, n, feat, feat))
    out_ch = n * s * s
    set_conv(plain.backbone_convs[m], *_embed(abpn.conv_up, widths[-1], width, n, feat, out_ch))
    weight, bias = _embed(abpn.conv_last, out_ch, widths[-1], n)
    install_clip_tail(plain, _anchor_taps(weight, out_ch, n, out_ch), bias, out_ch)
    return plain


def ecbsr_to_et(ecbsr_plain):
    """Plain ET form of an :class:`~src.models.ecbsr_plain.ECBSRPlain`; output = clip(ECBSR(x), 0, 1)."""
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
        slope[:feat] = _np(block.act.w)
        act.w.set_data(Tensor(slope.astype(np.float32)))
    out_ch = n * s * s
    weight, bias = _embed(ecbsr_plain.conv_last, out_ch, width, n)
    install_clip_tail(plain, _anchor_taps(weight, out_ch, n, feat), bias, out_ch)
    return plain
