"""SESR: collapsible linear blocks (Bhardwaj et al., "Collapsible Linear Blocks for Super-Efficient Super
Resolution", MLSys 2022; structure of the published code, github.com/ARM-software/sesr).

| variant | m (3x3 blocks) | f (features) | feature_size (expansion) | params x2 | MACs x2, 360x640 |
|---------|----------------|--------------|--------------------------|-----------|------------------|
| M3      | 3              | 16           | 256                      | 8.91K     | 2.05G            |
| M5      | 5              | 16           | 256                      | 13.52K    | 3.11G            |
| M7      | 7              | 16           | 256                      | 18.13K    | 4.18G            |
| M11     | 11             | 16           | 64                       | 27.34K    | 6.30G            |
| XL      | 11             | 32           | 64                       | 105.38K   | 24.28G           |

(params/MACs: collapsed conv weights, as in the paper's table; printed by
``scripts/model_summary.py``.)

Structure (as the published code): ``f0 = B_in(x - 0.5)`` (5x5 linear block, no
activation); m times ``y = act(B_i(y) + y)`` (3x3 linear blocks with a short
residual); ``y = B_out(y + f0) + x`` (5x5 block to n_colors*s^2 channels, input
added to every sub-pixel channel); depth-to-space; clip to [0, 1]. x4 uses two
depth-to-space x2 stages as published (x3 one stage).

Linear block forms (``linear_block_type``):
- ``expanded``: kxk conv to ``feature_size`` channels, 1x1 conv to the output.
- ``collapsed``: the same parameters, but every forward pass first collapses them
  into one kxk kernel (Algorithm 1) with the short residual folded in as an
  identity kernel (Algorithm 2), then runs that single conv. Gradients still
  reach the expanded weights. Biases collapse exactly: ``b = W2 b1 + b2``.
- ``collapsed_adder``: AdderSESR (see adder.py): the 3x3 blocks become adder
  layers with batch norm; the 5x5 blocks stay collapsed linear blocks.
The deploy form (:class:`SESRDeploy`) is plain convolutions holding the collapsed
kernels; :func:`to_deploy` builds it from any training form.

``n_colors``: 1 (Y in, Y out; published) or 3 (RGB). For Y models, evaluation
upscales CbCr with bicubic and recombines (see ``src/engine/inference.py``).
Input and output in [0, 1], NCHW: (N, n_colors, H, W) -> (N, n_colors, sH, sW).
"""
import math

import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops

from src.models.base import SRNet
from src.models.common import PixelShuffle, as_float64, conv2d, identity_kernel, make_activation, set_conv, \
    shuffle_stages
from src.models.family import Family, choice_rule, register_family
from src.errors import UserError
from src.models.adder import AdderBlock, AdderDeploy

VARIANTS = {
    "M3": dict(m=3, f=16, feature_size=256),
    "M5": dict(m=5, f=16, feature_size=256),
    "M7": dict(m=7, f=16, feature_size=256),
    "M11": dict(m=11, f=16, feature_size=64),
    "XL": dict(m=11, f=32, feature_size=64),
}
DEFAULT_VARIANT = "M5"
BLOCK_TYPES = ("expanded", "collapsed", "collapsed_adder")
ACTIVATIONS = ("prelu", "relu")
#: SESR's linear-block expansion width: 0 (variant default) or 1..MAX_FEATURE_SIZE channels.
MAX_FEATURE_SIZE = 4096


class LinearBlock(nn.Cell):
    """kxk conv to ``feature_size`` then 1x1 conv, run expanded or collapsed:
    (N, in_ch, H, W) -> (N, out_ch, H, W); ``residual`` adds the input when in_ch == out_ch."""

    # the block's shape (in, out, k, expansion) plus its two run modes
    def __init__(self, in_ch, out_ch, kernel_size, feature_size, collapsed=True, residual=False):
        super().__init__()
        self.expand = conv2d(in_ch, feature_size, kernel_size)
        self.project = conv2d(feature_size, out_ch, 1)
        self.collapsed = collapsed
        self.residual = residual and in_ch == out_ch
        self.kernel_size = kernel_size
        self.in_ch, self.out_ch, self.feature_size = in_ch, out_ch, feature_size
        self.pad = kernel_size // 2
        ident = identity_kernel(out_ch, kernel_size) if self.residual else np.zeros(
            (out_ch, in_ch, kernel_size, kernel_size), np.float32)
        self.identity = Tensor(ident, ms.float32)

    def collapse(self):
        """Single (kernel (out, in, k, k), bias (out,)) Tensors equal to the block, short residual included."""
        w2 = self.project.weight.reshape(self.out_ch, self.feature_size)
        w1 = self.expand.weight.reshape(self.feature_size, -1)
        kernel = ops.matmul(w2, w1).reshape(self.out_ch, self.in_ch, self.kernel_size, self.kernel_size)
        bias = ops.matmul(w2, self.expand.bias.reshape(-1, 1)).reshape(-1) + self.project.bias
        return kernel + self.identity, bias

    def construct(self, x):
        if self.collapsed:
            kernel, bias = self.collapse()
            y = ops.conv2d(x, kernel, None, 1, "pad", self.pad)
            return y + bias.reshape(1, -1, 1, 1)
        y = self.project(self.expand(x))
        if self.residual:
            y = y + x
        return y


class _SESRBase(SRNet):
    """What both forms share: activations, the depth-to-space stages and the output anchor and clip."""

    def _init_body(self, m, f, act, widest):
        """Activations of the ``m`` 3x3 blocks, the shuffle stages, radius and peak width."""
        self.m, self.f, self.act_type = m, f, act
        # the file rounds its float Y input onto the 8-bit image grid; the deployment simulation puts
        # that rounding here (src/quantlib/deploy.py), identity otherwise
        self.input_quant = nn.Identity()
        self.acts = nn.CellList([make_activation(act, f) for _ in range(m)])
        self.shuffles = nn.CellList([PixelShuffle(s) for s in shuffle_stages(self.scale, "sesr")])
        self.multiples = (1, self.scale * self.scale, 1, 1)
        self.receptive_radius = m + 4
        self.peak_channels = max(widest, self.n_colors * self.scale * self.scale)

    def _upsample(self, y, x):
        """``y`` (N, n_colors*s^2, H, W) plus the input on every sub-pixel channel, depth-to-space, clip."""
        y = y + ops.tile(x, self.multiples)
        for shuffle in self.shuffles:
            y = shuffle(y)
        return ops.clamp(y, 0.0, 1.0)


class SESR(_SESRBase):
    """Training form (expanded, collapsed or collapsed_adder linear blocks): (N, n_colors, H, W) in
    [0, 1] -> (N, n_colors, sH, sW) clipped to [0, 1]; ``m``, ``f``, ``feature_size`` as in the table above.

    Raises ValueError for an unknown ``linear_block_type`` or ``act``, or a scale other than 2, 3, 4.
    """

    # the paper's hyper-parameters (m, f, feature_size) and the family options, each stored in checkpoints
    def __init__(self, scale, m=5, f=16, feature_size=256, n_colors=1, act="prelu",
                 linear_block_type="collapsed", adder_eta=0.2):
        super().__init__(scale, n_colors)
        if linear_block_type not in BLOCK_TYPES:
            raise UserError(f"linear_block_type must be one of {BLOCK_TYPES}, not '{linear_block_type}'")
        collapsed = linear_block_type != "expanded"
        self.linear_block_type = linear_block_type
        self.input_block = LinearBlock(n_colors, f, 5, feature_size, collapsed)
        if linear_block_type == "collapsed_adder":
            self.blocks = nn.CellList([AdderBlock(f, 3, adder_eta) for _ in range(m)])
        else:
            self.blocks = nn.CellList([LinearBlock(f, f, 3, feature_size, collapsed, residual=True)
                                       for _ in range(m)])
        self._init_body(m, f, act, feature_size if not collapsed else f)
        self.output_block = LinearBlock(f, n_colors * scale * scale, 5, feature_size, collapsed)

    def construct(self, x):
        x = self.input_quant(x)
        y = f0 = self.input_block(x - 0.5)
        for block, act in zip(self.blocks, self.acts):
            y = act(block(y))
        return self._upsample(self.output_block(y + f0), x)


class SESRDeploy(_SESRBase):
    """Deploy form: plain 5x5 / 3x3 / 5x5 convolutions with the collapsed weights (adder 3x3 for AdderSESR):
    (N, n_colors, H, W) in [0, 1] -> (N, n_colors, sH, sW) clipped to [0, 1]. ValueError for an unknown
    ``act`` or a scale other than 2, 3, 4."""

    # (m, f) and the options that shape the deploy form (act, adder body)
    def __init__(self, scale, m=5, f=16, n_colors=1, act="prelu", adder=False):
        super().__init__(scale, n_colors)
        self.conv_first = conv2d(n_colors, f, 5)
        if adder:
            self.body = nn.CellList([AdderDeploy(f, 3) for _ in range(m)])
        else:
            self.body = nn.CellList([conv2d(f, f, 3) for _ in range(m)])
        self._init_body(m, f, act, f)
        self.conv_last = conv2d(f, n_colors * scale * scale, 5)

    def construct(self, x):
        x = self.input_quant(x)
        y = f0 = self.conv_first(x - 0.5)
        for conv, act in zip(self.body, self.acts):
            y = act(conv(y))
        return self._upsample(self.conv_last(y + f0), x)

    def equalization_pairs(self):
        """Body conv pairs separated only by the activation (see src/quantlib/equalize.py); the
        first conv and the last body conv also feed the long residual, so they are not scaled."""
        if not all(isinstance(conv, nn.Conv2d) for conv in self.body):
            return []
        names = [f"body.{i}" for i in range(len(self.body))]
        return list(zip(names[:-1], names[1:]))


def collapse_block_numpy(block):
    """(kernel (out, in, k, k), bias (out,)) of a LinearBlock in float64 numpy (exact collapse)."""
    w1, b1 = as_float64(block.expand.weight), as_float64(block.expand.bias)
    w2, b2 = as_float64(block.project.weight)[:, :, 0, 0], as_float64(block.project.bias)
    kernel = np.einsum("of,fikl->oikl", w2, w1)
    if block.residual:
        kernel = kernel + identity_kernel(block.out_ch, block.kernel_size)
    return kernel, w2 @ b1 + b2


def to_deploy(net):
    """Build the :class:`SESRDeploy` equal to a training-form :class:`SESR` (in eval mode)."""
    adder = net.linear_block_type == "collapsed_adder"
    deploy = SESRDeploy(net.scale, net.m, net.f, net.n_colors, net.act_type, adder=adder)
    set_conv(deploy.conv_first, *collapse_block_numpy(net.input_block))
    for src_block, dst in zip(net.blocks, deploy.body):
        if adder:
            dst.load_from_block(src_block)
        else:
            set_conv(dst, *collapse_block_numpy(src_block))
    set_conv(deploy.conv_last, *collapse_block_numpy(net.output_block))
    for src_act, dst_act in zip(net.acts, deploy.acts):
        if isinstance(src_act, nn.PReLU):
            dst_act.w.set_data(Tensor(src_act.w.asnumpy()))
    return deploy


def _sizes(variant, feature_size=None):
    """(m, f, feature_size) of a named variant, ``feature_size`` overriding the variant's when given."""
    key = str(variant).upper()
    if key not in VARIANTS:
        raise UserError(f"sesr: unknown variant '{variant}'; choose one of {sorted(VARIANTS)}")
    sizes = dict(VARIANTS[key])
    if feature_size:
        sizes["feature_size"] = int(feature_size)
    return sizes


# the family options (n_colors, act, linear_block_type, feature_size, adder_eta), as create_model passes them
def build_train(variant, scale, n_colors=1, act="prelu", linear_block_type="collapsed", feature_size=None,
                adder_eta=0.2):
    """:class:`SESR` of a named ``variant``; ValueError for another name."""
    return SESR(scale, **_sizes(variant, feature_size), n_colors=n_colors, act=act,
                linear_block_type=linear_block_type, adder_eta=adder_eta)


def build_deploy(variant, scale, n_colors=1, act="prelu", linear_block_type="collapsed", **training_only):
    """:class:`SESRDeploy` of a named ``variant`` (``feature_size``/``adder_eta`` shape only the training form)."""
    sizes = _sizes(variant, training_only.get("feature_size"))
    return SESRDeploy(scale, sizes["m"], sizes["f"], n_colors, act, adder=linear_block_type == "collapsed_adder")


def _feature_size_rule(value):
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_FEATURE_SIZE
    return None if ok else f"an integer in 0..{MAX_FEATURE_SIZE}; 0 = the variant's default"


def _adder_eta_rule(value):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    return None if ok else "a finite number > 0"


FAMILY = register_family(Family(
    "sesr", VARIANTS, DEFAULT_VARIANT, build_deploy=build_deploy, build_train=build_train, to_deploy=to_deploy,
    options=("n_colors", "act", "linear_block_type", "feature_size", "adder_eta"), defaults={"n_colors": 1},
    option_rules={"act": choice_rule(ACTIVATIONS), "linear_block_type": choice_rule(BLOCK_TYPES),
                  "feature_size": _feature_size_rule, "adder_eta": _adder_eta_rule},
    any_mc=False, input_weight={"train": "input_block.expand.weight"}))
