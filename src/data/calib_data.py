"""Unlabeled calibration patches: N LR patches drawn deterministically from an image folder.

Only images at least ``hr_patch`` pixels on each side are used. Each patch is an HR crop of ``hr_patch`` pixels (at a seeded random image and
position) downscaled with the MATLAB-compatible bicubic, so only the chosen images
are read. No ground truth is used by calibration.
"""
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from src.data.image_io import ImageError, read_rgb
from src.data.imresize import imresize
from src.data.train_set import find_images
from src.data.transforms import rgb_to_ycbcr01
from src.errors import InputNotFoundError


@dataclass(frozen=True)
class CalibrationImages:
    """Where calibration patches come from: ``path`` as the user gave it (for messages), ``folder``
    resolved, ``num`` LR patches of HR side ``hr_patch`` pixels drawn with ``seed``; ``given``: the
    folder was named on the command line (export calibrates an older checkpoint's grids only then)."""
    path: str
    folder: str
    num: int
    seed: int
    hr_patch: int = 192
    given: bool = False

    def patches(self, scale, n_colors):
        """:func:`calibration_patches` of these images for ``scale`` in ``n_colors`` colours."""
        return calibration_patches(self.folder, self.num, scale, self.hr_patch, self.seed, n_colors)


def _image_size(path):
    """(height, width) from the file header (no full decode); (0, 0) if unreadable."""
    try:
        with Image.open(path) as img:
            return img.size[1], img.size[0]
    except (OSError, ValueError):
        return 0, 0


def calibration_patches(folder, num, scale, hr_patch=192, seed=0, n_colors=3):
    """float32 array (num, n_colors, hr_patch/scale, hr_patch/scale) in [0, 1].

    ``folder`` is ``--calib_path``. Raises ``FileNotFoundError`` when it does not exist and
    ``ImageError`` when it is a file, holds no image large enough for a patch, or every drawn
    patch is flat (one value: blank or constant images, from which every method would fit
    its bounds to a single value and the quantized model would clip real photos).
    """
    hr_patch = hr_patch // scale * scale
    if hr_patch < scale:
        raise ImageError(f"--pac_hr_patch must be at least the scale ({scale}) to give an LR calibration patch")
    if not os.path.exists(folder):
        raise InputNotFoundError(f"calibration folder not found: {folder} (set --calib_path to a folder of images)")
    if not os.path.isdir(folder):
        raise ImageError(f"--calib_path {folder} is a file; pass a folder of unlabeled images")
    found = find_images(folder)
    paths = [p for p in found if min(_image_size(p)) >= hr_patch]
    if not paths:
        raise ImageError(f"no image in calibration folder {folder} holds a {hr_patch}px patch "
                         f"({len(found)} images found); set --calib_path or lower --pac_hr_patch")
    rng = np.random.default_rng(seed)
    picks = sorted(rng.integers(0, len(paths), num).tolist())
    patches, cache = [], {}
    for idx in picks:
        if idx not in cache:
            cache.clear()
            cache[idx] = read_rgb(paths[idx])
        img = cache[idx]
        if min(img.shape[:2]) < hr_patch:
            raise ImageError(f"{paths[idx]} is smaller than the {hr_patch}px calibration patch; lower --pac_hr_patch")
        y = int(rng.integers(0, img.shape[0] - hr_patch + 1))
        x = int(rng.integers(0, img.shape[1] - hr_patch + 1))
        lr = imresize(img[y:y + hr_patch, x:x + hr_patch], 1.0 / scale).astype(np.float32) / 255.0
        if n_colors == 1:
            lr = rgb_to_ycbcr01(lr)[..., :1].astype(np.float32)
        patches.append(lr.transpose(2, 0, 1))
    stacked = np.ascontiguousarray(np.stack(patches), dtype=np.float32)
    flat = stacked.reshape(len(stacked), -1)
    if np.all(flat.max(axis=1) == flat.min(axis=1)):
        raise ImageError(f"all {len(stacked)} calibration patches from --calib_path {folder} are flat (one value "
                         "each: blank or constant images); calibrate on natural photos")
    return stacked


def batches_of(patches, batch_size):
    """``patches`` (N, C, h, w) split into consecutive batches of ``batch_size`` (the last may be smaller)."""
    return [patches[i:i + batch_size] for i in range(0, len(patches), batch_size)]
