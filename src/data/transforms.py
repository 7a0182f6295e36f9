"""Array transforms used by evaluation and training: crops, colour, tensor layout."""
import math

import numpy as np

# BT.601 luma for 0..255 RGB, MATLAB rgb2ycbcr coefficients.
_Y_COEFFS = np.array([65.481, 128.553, 24.966], dtype=np.float64) / 255.0


def modcrop(img, multiple):
    """Crop the bottom/right edges so height and width are multiples of ``multiple``."""
    if multiple <= 1:
        return img
    h, w = img.shape[:2]
    return img[: h - h % multiple, : w - w % multiple]


def gt_multiple(gt_mod, scale):
    """The HR crop multiple: lcm(gt_mod, scale) so LR sizes stay integral."""
    gt_mod = max(int(gt_mod), 1)
    return gt_mod * scale // math.gcd(gt_mod, scale)


def rgb_to_y(img):
    """Y channel (16..235 range, float64) of an HxWx3 RGB image in 0..255."""
    return img.astype(np.float64) @ _Y_COEFFS + 16.0


_YCBCR = np.array([[65.481, 128.553, 24.966],
                   [-37.797, -74.203, 112.0],
                   [112.0, -93.786, -18.214]], dtype=np.float64) / 255.0
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0]) / 255.0


def rgb_to_ycbcr01(img):
    """HxWx3 RGB in [0, 1] -> YCbCr in [0, 1] (MATLAB rgb2ycbcr convention)."""
    return img.astype(np.float64) @ _YCBCR.T + _YCBCR_OFFSET


def ycbcr01_to_rgb(img):
    """Inverse of :func:`rgb_to_ycbcr01`."""
    return (img.astype(np.float64) - _YCBCR_OFFSET) @ np.linalg.inv(_YCBCR).T


def uint8_to_tensor(img):
    """HxWx3 uint8 -> 1x3xHxW float32 in [0, 1]."""
    return np.ascontiguousarray(img.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)


def tensor_to_uint8(arr):
    """1x3xHxW or 3xHxW float in [0, 1] -> HxWx3 uint8 (clip, x255, round half up)."""
    arr = np.asarray(arr)
    if arr.ndim == 4:
        arr = arr[0]
    scaled = np.clip(arr, 0.0, 1.0)  # one temporary (then in place): a large tile's peak stays ~2x its floats
    scaled *= 255.0
    scaled += 0.5
    np.floor(scaled, out=scaled)
    return scaled.astype(np.uint8).transpose(1, 2, 0)
