"""LR/HR pair checks and content keys shared by evaluation and training.

An LR file belongs to an HR image at ``scale`` when, in each dimension, its size
lies between the size made from the mod-cropped HR (``H_crop / scale``, what LR
made from GTmod12-style crops has) and ``ceil(H / scale)`` (what MATLAB's
``imresize(HR, 1/scale)`` of the uncropped HR has). Anything outside that range is
LR of another image or another scale (e.g. x2 files under ``X3``) and is refused
instead of being cropped and scored.

LR caches are keyed on the HR *content* (:func:`content_key` of the decoded,
cropped HR pixels), so an HR image replaced by another with the same name and size
never reuses the old LR.
"""
import hashlib
import math

import numpy as np

from src.data.image_io import ImageError


def lr_size_range(hr_hw, scale, multiple):
    """Allowed LR (height, width) ranges for an HR image of size ``hr_hw`` (uncropped).

    Returns ``((h_min, h_max), (w_min, w_max))`` with ``*_min = (HR // multiple * multiple) // scale``
    (LR of the HR cropped to ``multiple``) and ``*_max = ceil(HR / scale)``.
    """
    return tuple(((n // multiple * multiple) // scale, math.ceil(n / scale)) for n in hr_hw[:2])


def check_lr_size(lr_path, lr_hw, hr_path, hr_hw, scale, multiple):
    """Raise ``ImageError`` (one line: file, sizes, expected size, likely cause) unless an LR file of
    size ``lr_hw`` (height, width) fits the HR image of size ``hr_hw`` at ``scale`` (see module doc)."""
    (h_lo, h_hi), (w_lo, w_hi) = lr_size_range(hr_hw, scale, multiple)
    h, w = int(lr_hw[0]), int(lr_hw[1])
    if h_lo <= h <= h_hi and w_lo <= w <= w_hi:
        return
    expect_w = f"{w_lo}" if w_lo == w_hi else f"{w_lo}..{w_hi}"
    expect_h = f"{h_lo}" if h_lo == h_hi else f"{h_lo}..{h_hi}"
    ratio_h, ratio_w = hr_hw[0] / max(h, 1), hr_hw[1] / max(w, 1)
    guess = round((ratio_h + ratio_w) / 2)
    if guess >= 1 and guess != scale and abs(ratio_h - guess) < 0.5 and abs(ratio_w - guess) < 0.5:
        cause = f"it looks like x{guess} LR in the wrong scale folder (is it the X{scale} LR?)"
    else:
        cause = f"is it the X{scale} LR of this HR image (wrong scale folder or a different image)?"
    raise ImageError(f"{lr_path} is {w}x{h} but the x{scale} LR of {hr_path} ({hr_hw[1]}x{hr_hw[0]}) must be "
                     f"{expect_w}x{expect_h} (ceil(HR/{scale}), or HR cropped to a multiple of {multiple} "
                     f"divided by {scale}); {cause}")


def content_key(img):
    """16 hex digits of SHA-256 over an image array's shape, dtype and pixels.

    Used as the LR cache key of an HR image: any change of the (cropped) HR content gives
    a new key. Hashing a 2K DIV2K image takes about 20 ms.
    """
    arr = np.ascontiguousarray(img)
    digest = hashlib.sha256(f"{arr.shape}|{arr.dtype}|".encode())
    digest.update(memoryview(arr).cast("B"))
    return digest.hexdigest()[:16]
