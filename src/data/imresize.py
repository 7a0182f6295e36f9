"""MATLAB-compatible ``imresize(img, scale, 'bicubic')`` in numpy.

Follows MATLAB's algorithm: Keys cubic kernel (a = -0.5), antialiasing when
shrinking (kernel stretched by 1/scale), symmetric border handling, one 1-D
pass per dimension in order of increasing scale factor (height first on ties),
and, for uint8 input, rounding and saturation to uint8 after *each* pass (as
MATLAB's ``imresizemex`` returns the input class). Weights and sums are
computed in float64.
"""
import math
import os

import numpy as np
from src.data.image_io import ImageError, read_rgb, write_png


def _cubic(x):
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2)))


def _contributions(in_len, out_len, scale, antialias=True):
    """Weights (out_len, P) and 0-based source indices (out_len, P) for one axis."""
    kernel_width = 4.0
    stretch = antialias and scale < 1
    if stretch:
        kernel_width /= scale
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = int(math.ceil(kernel_width)) + 2
    idx = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    dist = u[:, None] - idx
    weights = scale * _cubic(dist * scale) if stretch else _cubic(dist)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # Symmetric (mirror) extension of 1-based indices, then convert to 0-based.
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    idx = mirror[np.mod(idx.astype(np.int64) - 1, mirror.size)]
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], idx[:, keep]


def _resize_axis(img, axis, out_len, scale, antialias, as_uint8):
    weights, idx = _contributions(img.shape[axis], out_len, scale, antialias)
    moved = np.moveaxis(img, axis, 0).astype(np.float64)
    gathered = moved[idx]  # (out_len, P, ...)
    w = weights.reshape(weights.shape + (1,) * (moved.ndim - 1))
    out = (gathered * w).sum(axis=1)
    if as_uint8:
        out = np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)
    return np.moveaxis(out, 0, axis)


def output_size(shape_hw, scale):
    return tuple(int(math.ceil(s * scale)) for s in shape_hw)


def imresize(img, scale=None, output_shape=None, antialias=True):
    """Resize an HxW or HxWxC image like MATLAB's bicubic ``imresize``.

    ``scale`` is a float (e.g. 1/3); ``output_shape`` (h, w) may be given instead.
    uint8 input gives uint8 output with per-pass rounding; float input stays float64.
    """
    img = np.asarray(img)
    if scale is None and output_shape is None:
        raise ValueError("imresize needs scale or output_shape")
    in_hw = img.shape[:2]
    if output_shape is None:
        scales = (float(scale), float(scale))
        output_shape = output_size(in_hw, scale)
    else:
        output_shape = tuple(int(v) for v in output_shape)
        scales = (float(scale),) * 2 if scale is not None else tuple(
            o / i for o, i in zip(output_shape, in_hw))
    as_uint8 = img.dtype == np.uint8
    out = img
    for axis in sorted(range(2), key=lambda a: scales[a]):  # stable: height first on ties
        out = _resize_axis(out, axis, output_shape[axis], scales[axis], antialias, as_uint8)
    return out


def bicubic_lr(hr, scale, cache_path=None):
    """``imresize(hr, 1/scale)`` of a mod-cropped uint8 HR image, read from / written to ``cache_path``.

    A cache entry is used only if it decodes and has the expected LR size; otherwise
    the LR image is made again and the entry rewritten (atomically).
    """
    shape = (hr.shape[0] // scale, hr.shape[1] // scale)
    if cache_path and os.path.isfile(cache_path):
        try:
            lr = read_rgb(cache_path)
            if lr.shape[:2] == shape:
                return lr
        except ImageError:
            pass  # unreadable cache entry: make it again
    lr = imresize(hr, 1.0 / scale)
    if cache_path:
        write_png(cache_path, lr)
    return lr
