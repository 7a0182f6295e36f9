"""Whole-image super-resolution with a MindSpore Cell: tiling and self-ensemble.

Tiling: the LR image is cut into ``tile_size`` squares, each run with
``tile_overlap`` extra LR pixels of real context on every side, and only the
tile's own region of the output is kept. With ``tile_overlap`` at least the
model's receptive-field radius (the default, -1) the result equals the untiled
output. ``tile_size`` 0 picks a size from ``max_tile_mem_gb``; -1 never tiles.

Memory: :meth:`SRPredictor.predict` writes each tile's 8-bit pixels into the uint8 output as it is
made, so an image needs its uint8 output plus one tile's working set (a Y model's Cb/Cr are
upscaled per tile too, with :data:`CHROMA_CONTEXT` LR pixels of context for the bicubic kernel);
only the x8 self-ensemble still runs the whole image at once.
"""
import math

import numpy as np
import mindspore as ms
from mindspore import Tensor, nn

from src.data.imresize import imresize
from src.data.transforms import rgb_to_ycbcr01, tensor_to_uint8, uint8_to_tensor, ycbcr01_to_rgb

_BYTES_PER_VALUE = 4
CHROMA_CONTEXT = 4  # LR pixels: MATLAB bicubic upscaling reads 2 on each side; a tile's chroma is exact with 4
_LIVE_BUFFERS = 3  # input, output and one temporary of the widest layer
_OUTPUT_COPIES = 3  # the HR output: the runtime's tensor, its numpy copy, the uint8 conversion's temporary


def peak_bytes_per_lr_pixel(net, scale):
    """Activation bytes per LR pixel of the widest layer, times the buffers alive at once.

    Models declare ``peak_channels`` (widest activation in channels per LR pixel,
    e.g. EDSR's upsampler: num_feat * scale^2). Otherwise assume the widest conv
    output sits at HR resolution, which over-estimates. Measured for EDSR-full x2
    in graph mode: ~9.8 KB per LR pixel; this gives 12 KB. Plus the float HR output, held
    ``_OUTPUT_COPIES`` times (for a small model it is as large as its activations: ABPN x3 28 + 27
    channels per LR pixel).
    """
    channels = net.peak_channels
    if channels is None:
        widest = max((c.out_channels for _, c in net.cells_and_names() if isinstance(c, nn.Conv2d)), default=64)
        channels = widest * scale * scale
    output = int(getattr(net, "n_colors", 3)) * scale * scale
    return (channels * _LIVE_BUFFERS + output * _OUTPUT_COPIES) * _BYTES_PER_VALUE


def auto_tile_size(net, scale, overlap, max_mem_gb):
    side = int(math.sqrt(max_mem_gb * 2 ** 30 / peak_bytes_per_lr_pixel(net, scale))) - 2 * overlap
    return max(64, side // 8 * 8)


def _ensemble_forward(x, k):
    if k & 1:
        x = x[:, :, :, ::-1]
    if k & 2:
        x = x[:, :, ::-1, :]
    if k & 4:
        x = x.transpose(0, 1, 3, 2)
    return np.ascontiguousarray(x)


def _ensemble_inverse(y, k):
    if k & 4:
        y = y.transpose(0, 1, 3, 2)
    if k & 2:
        y = y[:, :, ::-1, :]
    if k & 1:
        y = y[:, :, :, ::-1]
    return y


def _region(start, end, size, tile, context):
    """``[lo, hi)`` along one axis of ``size`` LR pixels that :meth:`SRPredictor.predict` runs for the kept
    ``[start, end)``: that range with ``context`` pixels on each side, grown to at least ``tile`` pixels where
    the image has them (moved back at the far border, as a fixed-window file's own windows are: no padded
    window where the image is larger than one)."""
    lo, hi = max(start - context, 0), min(end + context, size)
    if hi - lo < tile:
        lo = max(0, min(lo, size - tile))
        hi = min(max(hi, lo + tile), size)
    return lo, hi


class SRPredictor:
    """Runs ``net`` on uint8 RGB images and returns uint8 RGB SR images."""

    def __init__(self, net, scale, tile_size=0, tile_overlap=-1, self_ensemble=False, max_tile_mem_gb=2.0):
        self.net = net
        self.scale = int(scale)
        self.self_ensemble = bool(self_ensemble)
        self.overlap = int(tile_overlap) if tile_overlap >= 0 else int(net.receptive_radius)
        self.max_tile_mem_gb = float(max_tile_mem_gb)
        self.tile_size_given = int(tile_size)
        if tile_size == 0:
            tile_size = auto_tile_size(net, self.scale, self.overlap, self.max_tile_mem_gb)
        self.tile_size = int(tile_size)
        self.n_colors = int(net.n_colors)
        net.set_train(False)
        # One compiled graph for every image size.
        net.set_inputs(Tensor(shape=[1, self.n_colors, None, None], dtype=ms.float32))

    @classmethod
    def configured(cls, net, scale, inference):
        """The predictor of ``net`` at ``scale`` run as ``inference`` says
        (:class:`~src.engine.sections.Inference`: tiling, overlap, self-ensemble, memory budget)."""
        return cls(net, scale, inference.tile_size, inference.tile_overlap, inference.self_ensemble,
                   inference.max_tile_mem_gb)

    def _run(self, x):
        return self.net(Tensor(x, ms.float32)).asnumpy()

    def forward(self, x, tiled=True):
        """Float NCHW in [0,1] -> float NCHW output (tiled when larger than the tile size and ``tiled``)."""
        _, _, h, w = x.shape
        tile = self.tile_size
        if not tiled or tile < 0 or (h <= tile and w <= tile):
            return self._run(x)
        s, ov = self.scale, self.overlap
        out = np.empty((x.shape[0], x.shape[1], h * s, w * s), dtype=np.float32)
        for y0 in range(0, h, tile):
            y1 = min(y0 + tile, h)
            for x0 in range(0, w, tile):
                x1 = min(x0 + tile, w)
                py0, px0 = max(y0 - ov, 0), max(x0 - ov, 0)
                patch = self._run(np.ascontiguousarray(x[:, :, py0:min(y1 + ov, h), px0:min(x1 + ov, w)]))
                oy, ox = (y0 - py0) * s, (x0 - px0) * s
                out[:, :, y0 * s:y1 * s, x0 * s:x1 * s] = patch[:, :, oy:oy + (y1 - y0) * s, ox:ox + (x1 - x0) * s]
        return out

    def _predict_channels(self, x, tiled=True):
        if not self.self_ensemble:
            return self.forward(x, tiled)
        acc = np.zeros(x.shape[:2] + (x.shape[2] * self.scale, x.shape[3] * self.scale), dtype=np.float64)
        for k in range(8):
            acc += _ensemble_inverse(self.forward(_ensemble_forward(x, k)), k)
        return (acc / 8).astype(np.float32)

    def predict_float(self, lr, tiled=True):
        """uint8 HxWx3 RGB -> float 1x3xHxW RGB. Y-only models (n_colors 1) super-resolve
        the Y channel; Cb and Cr are upscaled with MATLAB bicubic and recombined. ``tiled`` False runs
        the network once on the whole of ``lr`` (a region :meth:`predict` cut to size)."""
        if self.n_colors == 3:
            return self._predict_channels(uint8_to_tensor(lr), tiled)
        ycbcr = rgb_to_ycbcr01(lr.astype(np.float64) / 255.0)
        y_sr = self._predict_channels(np.ascontiguousarray(ycbcr[None, None, :, :, 0], dtype=np.float32),
                                      tiled)[0, 0]
        cbcr = imresize(ycbcr[:, :, 1:], float(self.scale))
        rgb = ycbcr01_to_rgb(np.concatenate([y_sr[:, :, None], cbcr], axis=2))
        return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32)

    def _region_hw(self, h, w):
        """(height, width) of the regions :meth:`predict` runs: the tile size, or an exported file's own fixed
        window when no tile size is given (its windows then need no padding and the float working set is one
        window's)."""
        window = getattr(getattr(self.net, "io", None), "tile_hw", None)
        if window and self.tile_size_given <= 0 and self.tile_size != -1:
            return tuple(window)
        tile = self.tile_size if self.tile_size > 0 else max(h, w)
        return tile, tile

    def predict(self, lr):
        """uint8 HxWx3 RGB -> uint8 (sH)x(sW)x3 RGB, tile by tile into the output (see the module notes); equal
        to converting :meth:`predict_float` of the whole image."""
        h, w = lr.shape[:2]
        tile_h, tile_w = self._region_hw(h, w)
        if self.self_ensemble or (h <= tile_h and w <= tile_w):
            # within one of a file's windows: one run (not tiles of the automatic size, each padded to the window)
            window = (tile_h, tile_w) == getattr(getattr(self.net, "io", None), "tile_hw", None)
            return tensor_to_uint8(self.predict_float(lr, tiled=not (window and not self.self_ensemble)))
        s = self.scale
        context = max(self.overlap, CHROMA_CONTEXT if self.n_colors == 1 else 0)
        # regions of one tile (or one fixed window of a file) holding their context (:func:`_region`)
        step_h = tile_h - 2 * context if tile_h > 4 * context else tile_h
        step_w = tile_w - 2 * context if tile_w > 4 * context else tile_w
        out = np.empty((h * s, w * s, 3), np.uint8)
        for y0 in range(0, h, step_h):
            y1 = min(y0 + step_h, h)
            py0, py1 = _region(y0, y1, h, tile_h, context)
            for x0 in range(0, w, step_w):
                x1 = min(x0 + step_w, w)
                px0, px1 = _region(x0, x1, w, tile_w, context)
                sr = self.predict_float(lr[py0:py1, px0:px1], tiled=False)  # one run: a region is one tile
                oy, ox = (y0 - py0) * s, (x0 - px0) * s
                out[y0 * s:y1 * s, x0 * s:x1 * s] = tensor_to_uint8(
                    sr[:, :, oy:oy + (y1 - y0) * s, ox:ox + (x1 - x0) * s])
        return out
