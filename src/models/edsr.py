"""EDSR (Lim et al., CVPRW 2017).

| variant  | residual blocks | features | res_scale | params (x2) |
|----------|-----------------|----------|-----------|-------------|
| baseline | 16              | 64       | 1.0       | 1.37M       |
| full     | 32              | 256      | 0.1       | 40.7M       |

Input and output: RGB in [0, 1], NCHW. Internally the network works on
0..255 values with the DIV2K mean subtracted (as EDSR-PyTorch / BasicSR), so
published weights apply unchanged. Upsampler: x2/x3 one conv + shuffle; x4 two
x2 stages.
"""
import numpy as np
from mindspore import Tensor, nn
import mindspore as ms

from src.models.common import PixelShuffle, conv2d

VARIANTS = {
    "baseline": dict(num_block=16, num_feat=64, res_scale=1.0),
    "full": dict(num_block=32, num_feat=256, res_scale=0.1),
}
DEFAULT_VARIANT = "baseline"
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
RGB_RANGE = 255.0


def upsample_stages(scale):
    """Per-stage shuffle factors of the EDSR upsampler."""
    if scale in (2, 3):
        return [scale]
    if scale == 4:
        return [2, 2]
    raise ValueError(f"edsr supports scale 2, 3 or 4, not {scale}")


class ResBlock(nn.Cell):
    def __init__(self, num_feat, res_scale):
        super().__init__()
        self.conv1 = conv2d(num_feat, num_feat)
        self.conv2 = conv2d(num_feat, num_feat)
        self.relu = nn.ReLU()
        self.res_scale = res_scale

    def construct(self, x):
        return x + self.conv2(self.relu(self.conv1(x))) * self.res_scale


class UpStage(nn.Cell):
    def __init__(self, num_feat, factor):
        super().__init__()
        self.conv = conv2d(num_feat, num_feat * factor * factor)
        self.shuffle = PixelShuffle(factor)

    def construct(self, x):
        return self.shuffle(self.conv(x))


class EDSR(nn.Cell):
    """EDSR: RGB 3 x H x W in [0, 1] -> 3 x sH x sW (not clipped).

    RGB only: the mean shift is the DIV2K RGB mean, so ``n_colors`` other than 3
    raises ValueError instead of building a network that ignores it.
    """

    def __init__(self, scale, num_block=16, num_feat=64, res_scale=1.0, n_colors=3):
        super().__init__()
        if n_colors != len(DIV2K_RGB_MEAN):
            raise ValueError(f"edsr takes RGB images only (n_colors 3; its mean shift is the DIV2K RGB mean), "
                             f"not n_colors {n_colors}; drop --n_colors or use a family with a Y form (sesr, abpn, "
                             "etds, ecbsr)")
        self.scale, self.n_colors = scale, n_colors
        self.mean = Tensor(np.array(DIV2K_RGB_MEAN, np.float32).reshape(1, 3, 1, 1), ms.float32)
        self.conv_first = conv2d(n_colors, num_feat)
        self.body = nn.SequentialCell([ResBlock(num_feat, res_scale) for _ in range(num_block)])
        self.conv_after_body = conv2d(num_feat, num_feat)
        self.upsample = nn.SequentialCell([UpStage(num_feat, f) for f in upsample_stages(scale)])
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


def build(variant, scale, **kwargs):
    spec = VARIANTS.get(str(variant).lower())
    if spec is None:
        raise ValueError(f"edsr: unknown variant '{variant}'; choose one of {sorted(VARIANTS)}")
    return EDSR(scale, **spec, **kwargs)
