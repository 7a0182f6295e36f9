"""PSNR and SSIM as used by the published SR benchmarks (BasicSR definitions).

Both take HxWx3 RGB images with values in 0..255 (normally uint8 after the
model output was clipped and rounded), crop ``shave`` pixels at every border,
and work on the BT.601 Y channel (``channel='y'``) or on RGB (``channel='rgb'``).
SSIM uses an 11x11 Gaussian window (sigma 1.5) over the valid region.
"""
import cv2
import numpy as np

from src.data.transforms import rgb_to_y
from src.errors import UserError

SSIM_WINDOW = 11  # side of SSIM's Gaussian window (sigma 1.5): the smallest image SSIM can measure


def _prepare(img, ref, shave, channel):
    if img.shape != ref.shape:
        raise ValueError(f"image shapes differ: {img.shape} vs {ref.shape}")
    if shave > 0:
        img = img[shave:-shave, shave:-shave]
        ref = ref[shave:-shave, shave:-shave]
    if channel == "y":
        return rgb_to_y(img)[..., None], rgb_to_y(ref)[..., None]
    if channel == "rgb":
        return img.astype(np.float64), ref.astype(np.float64)
    raise UserError(f"metric channel must be 'y' or 'rgb', not '{channel}'")


def calculate_psnr(img, ref, shave=0, channel="y"):
    a, b = _prepare(img, ref, shave, channel)
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0 ** 2 / mse))


def _ssim_single(a, b):
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    kernel = cv2.getGaussianKernel(SSIM_WINDOW, 1.5)
    window = kernel @ kernel.T
    half = SSIM_WINDOW // 2

    def blur(x):
        return cv2.filter2D(x, -1, window)[half:-half, half:-half]

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return ssim_map.mean()


def calculate_ssim(img, ref, shave=0, channel="y"):
    a, b = _prepare(img, ref, shave, channel)
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise UserError(f"SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels after shaving, got {a.shape[:2]}")
    return float(np.mean([_ssim_single(a[..., c], b[..., c]) for c in range(a.shape[2])]))
