"""EDSR (Lim et al., "Enhanced Deep Residual Networks for Single Image Super-Resolution", CVPRW 2017);
weights from EDSR-PyTorch (``head``/``body``/``tail``) or BasicSR (``conv_first``/...).

| variant  | residual blocks | features | res_scale | params (x2) |
|----------|-----------------|----------|-----------|-------------|
| baseline | 16              | 64       | 1.0       | 1.37M       |
| full     | 32              | 256      | 0.1       | 40.7M       |
| f32b5    | 5               | 32       | 1.0       | 106k        |
| f64b5    | 5               | 64       | 1.0       | 415k        |

Input and output: RGB in [0, 1], NCHW. ``baseline``/``full`` work internally on
0..255 values with the DIV2K mean subtracted (as EDSR-PyTorch / BasicSR), so
published weights apply unchanged. Upsampler: x2/x3 one conv + shuffle; x4 two
x2 stages. One network serves as training and deploy form.

``f32b5``/``f64b5`` are the mobile layout of MLPerf Mobile's super-resolution
benchmark (mlcommons/mobile_models v3_0 ``edsr_f32b5``; :class:`EDSRMobile`): no
mean shift, no conv after the upsampler, the conv before depth-to-space gives
``3 * scale^2`` channels directly, output clipped. MLPerf's files take pixels in
0..255; a network of convs, ReLUs and adds is positively homogeneous, so the
importer (src/weights/tf_import.py) divides every bias by 255 and the same
weights serve images in [0, 1] exactly.
"""
import numpy as np
from mindspore import Tensor, nn, ops
import mindspore as ms

from src.models.base import SRNet
from src.models.common import PixelShuffle, conv2d, crd_to_dcr, shuffle_stages
from src.models.family import Family, register_family
from src.errors import UserError

VARIANTS = {
    "baseline": dict(num_block=16, num_feat=64, res_scale=1.0),
    "full": dict(num_block=32, num_feat=256, res_scale=0.1),
    "f32b5": dict(num_block=5, num_feat=32, layout="mobile"),
    "f64b5": dict(num_block=5, num_feat=64, layout="mobile"),
}
DEFAULT_VARIANT = "baseline"
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
RGB_RANGE = 255.0


class ResBlock(nn.Cell):
    """x + res_scale * conv2(relu(conv1(x))), (N, F, H, W) -> (N, F, H, W)."""

    def __init__(self, num_feat, res_scale):
        super().__init__()
        self.conv1 = conv2d(num_feat, num_feat)
        self.conv2 = conv2d(num_feat, num_feat)
        self.relu = nn.ReLU()
        self.res_scale = res_scale

    def construct(self, x):
        return x + self.conv2(self.relu(self.conv1(x))) * self.res_scale


class PlainResBlock(nn.Cell):
    """x + conv2(relu(conv1(x))) (no residual scaling), (N, F, H, W) -> (N, F, H, W).

    ``input_quant`` (identity; src/quantlib/deploy.py's ``tied_input`` site) rounds the block input
    where a full-integer file rounds the previous block's sum, so conv1 and the skip read one value.
    """

    def __init__(self, num_feat):
        super().__init__()
        self.conv1 = conv2d(num_feat, num_feat)
        self.conv2 = conv2d(num_feat, num_feat)
        self.relu = nn.ReLU()
        self.input_quant = nn.Identity()

    def construct(self, x):
        x = self.input_quant(x)
        return x + self.conv2(self.relu(self.conv1(x)))


class UpStage(nn.Cell):
    """conv to F*f*f channels + depth-to-space: (N, F, H, W) -> (N, F, fH, fW)."""

    def __init__(self, num_feat, factor):
        super().__init__()
        self.conv = conv2d(num_feat, num_feat * factor * factor)
        self.shuffle = PixelShuffle(factor)

    def construct(self, x):
        return self.shuffle(self.conv(x))


class EDSR(SRNet):
    """EDSR: RGB (N, 3, H, W) in [0, 1] -> (N, 3, sH, sW) (not clipped).

    RGB only: the mean shift is the DIV2K RGB mean, so ``n_colors`` other than 3
    raises ValueError instead of building a network that ignores it.
    """

    def __init__(self, scale, num_block=16, num_feat=64, res_scale=1.0, n_colors=3):
        if n_colors != len(DIV2K_RGB_MEAN):
            raise UserError(f"edsr takes RGB images only (n_colors 3; its mean shift is the DIV2K RGB mean), "
                             f"not n_colors {n_colors}; drop --n_colors or use a family with a Y form (sesr, abpn, "
                             "etds, ecbsr)")
        super().__init__(scale, n_colors)
        self.mean = Tensor(np.array(DIV2K_RGB_MEAN, np.float32).reshape(1, 3, 1, 1), ms.float32)
        self.conv_first = conv2d(n_colors, num_feat)
        self.body = nn.SequentialCell([ResBlock(num_feat, res_scale) for _ in range(num_block)])
        self.conv_after_body = conv2d(num_feat, num_feat)
        self.upsample = nn.SequentialCell([UpStage(num_feat, f) for f in shuffle_stages(scale, "edsr")])
        self.conv_last = conv2d(num_feat, n_colors)
        # LR-pixel radius: head + 2 per block + after-body, plus upsampler/tail convs in LR units.
        self.receptive_radius = 2 * num_block + 2 + 2
        # Widest activation per LR pixel: each upsampler stage holds num_feat * factor^2 channels.
        self.peak_channels = num_feat * scale * scale

    def construct(self, x):
        x = (x - self.mean) * RGB_RANGE
        feat = self.conv_first(x)
        feat = feat + self.conv_after_body(self.body(feat))
        out = self.conv_last(self.upsample(feat))
        return out / RGB_RANGE + self.mean

    def equalization_pairs(self):
        """conv1 -> ReLU -> conv2 of every residual block (see src/quantlib/equalize.py)."""
        return [(f"body.{i}.conv1", f"body.{i}.conv2") for i in range(len(self.body))]


class EDSRMobile(SRNet):
    """EDSR in MLPerf Mobile's layout: RGB (N, 3, H, W) in [0, 1] -> (N, 3, sH, sW), clipped to [0, 1].

    conv_first, ``num_block`` x (conv + ReLU + conv, added to its input), conv_after_body added to
    conv_first's output, conv_up to ``3 * scale^2`` channels, depth-to-space (DCR, as TensorFlow's), clip.
    RGB only (as MLPerf's files); ``n_colors`` other than 3 raises ValueError.
    """

    def __init__(self, scale, num_block=5, num_feat=32, n_colors=3):
        if n_colors != 3:
            raise UserError(f"edsr's mobile layout takes RGB images only (n_colors 3), not n_colors {n_colors}")
        super().__init__(scale, n_colors)
        self.conv_first = conv2d(n_colors, num_feat)
        self.body = nn.SequentialCell([PlainResBlock(num_feat) for _ in range(num_block)])
        self.conv_after_body = conv2d(num_feat, num_feat)
        self.conv_up = conv2d(num_feat, n_colors * scale * scale)
        self.upsample = PixelShuffle(scale)
        # LR-pixel radius: one per 3x3 conv on the LR grid (first, 2 per block, after-body, up).
        self.receptive_radius = 2 * num_block + 3
        self.peak_channels = max(num_feat, n_colors * scale * scale)

    def construct(self, x):
        feat = self.conv_first(x)
        feat = feat + self.conv_after_body(self.body(feat))
        return ops.clamp(self.upsample(self.conv_up(feat)), 0.0, 1.0)

    def equalization_pairs(self):
        """conv1 -> ReLU -> conv2 of every residual block (see src/quantlib/equalize.py)."""
        return [(f"body.{i}.conv1", f"body.{i}.conv2") for i in range(len(self.body))]


def build(variant, scale, n_colors=3):
    """:class:`EDSR` or :class:`EDSRMobile` of a named ``variant``; ValueError for another name or
    ``n_colors`` other than 3."""
    sizes = VARIANTS.get(str(variant).lower())
    if sizes is None:
        raise UserError(f"edsr: unknown variant '{variant}'; choose one of {sorted(VARIANTS)}")
    sizes = dict(sizes)
    if sizes.pop("layout", "") == "mobile":
        return EDSRMobile(scale, **sizes, n_colors=n_colors)
    return EDSR(scale, **sizes, n_colors=n_colors)


def torch_map(mapper, net):
    """EDSR-PyTorch (head.0, body.i.body.{0,2}, body.N, tail.0.{2k}, tail.1) or BasicSR
    (conv_first, body.i.conv{1,2}, conv_after_body, upsample.{2k}, conv_last) names."""
    if isinstance(net, EDSRMobile):
        mapper.fail("edsr's mobile layout (f32b5, f64b5) has no PyTorch release; import MLPerf's float .tflite "
                    "with scripts/convert_weights.py")
    n_blocks = len(net.body)
    if "head.0.weight" in mapper.src:  # EDSR-PyTorch
        names = dict(first="head.0", block="body.{i}.body.{j}", after=f"body.{n_blocks}",
                     up="tail.0.{k}", last="tail.1")
        conv_idx = (0, 2)
    else:  # BasicSR
        names = dict(first="conv_first", block="body.{i}.conv{j}", after="conv_after_body",
                     up="upsample.{k}", last="conv_last")
        conv_idx = (1, 2)
    mapper.conv("conv_first", names["first"])
    for i in range(n_blocks):
        for ours, j in zip(("conv1", "conv2"), conv_idx):
            mapper.conv(f"body.{i}.{ours}", names["block"].format(i=i, j=j))
    mapper.conv("conv_after_body", names["after"])
    feat = net.conv_first.out_channels
    for k, factor in enumerate(shuffle_stages(net.scale, "edsr")):
        mapper.conv(f"upsample.{k}.conv", names["up"].format(k=2 * k),
                    out_perm=crd_to_dcr(feat * factor * factor, factor))
    mapper.conv("conv_last", names["last"])


def tf_map(convs, net):
    """Ordered convs of a TensorFlow/TFLite EDSR in MLPerf's layout (first, 2 per block, after-body, up) ->
    our names; see src/weights/tf_import.py."""
    if not isinstance(net, EDSRMobile):
        convs.fail("the TensorFlow EDSR files (MLPerf Mobile) are the mobile layout: pass --variant f32b5 or "
                   "f64b5")
    names = ["conv_first"] + [f"body.{i}.conv{j}" for i in range(len(net.body)) for j in (1, 2)]
    relu = [False] + [j == 1 for i in range(len(net.body)) for j in (1, 2)]
    return convs.assign(names + ["conv_after_body", "conv_up"], relu + [False, False])


# takes n_colors only to refuse anything but 3
FAMILY = register_family(Family("edsr", VARIANTS, DEFAULT_VARIANT, build_deploy=build, build_train=build,
                                any_mc=False, torch_map=torch_map, torch_ignore=("sub_mean.", "add_mean."),
                                tf_map=tf_map))
