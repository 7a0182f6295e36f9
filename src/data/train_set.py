"""Training patches from any folder of HR images.

Patches are RGB, or the BT.601 Y channel (MATLAB convention, [0, 1]) for
``n_colors=1`` models. Every image is read once, mod-cropped to the scale and downscaled with the
MATLAB-compatible bicubic; the (LR, HR) pairs stay in memory. Batches are random
LR crops of ``patch_size`` with the aligned HR crop, and random horizontal /
vertical flips and transposition.
"""
import os

import numpy as np

from src.data.image_io import IMAGE_EXTENSIONS, ImageError, read_rgb
from src.data.imresize import imresize
from src.data.transforms import modcrop, rgb_to_ycbcr01


def find_images(root):
    if not os.path.isdir(root):
        raise FileNotFoundError(f"training folder not found: {root} (set --train_path)")
    found = []
    for folder, _, files in os.walk(root):
        found += [os.path.join(folder, f) for f in files
                  if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")]
    return sorted(found)


class PatchSampler:
    def __init__(self, root, scale, patch_size, seed=0, n_colors=3):
        self.scale, self.patch, self.n_colors = int(scale), int(patch_size), int(n_colors)
        paths = find_images(root)
        self.pairs = []
        skipped = []
        for path in paths:
            hr = modcrop(read_rgb(path), self.scale)
            if min(hr.shape[:2]) < self.patch * self.scale:
                skipped.append(os.path.basename(path))
                continue
            self.pairs.append((imresize(hr, 1.0 / self.scale), hr))
        if not self.pairs:
            raise ImageError(f"no usable training images in {root}: {len(paths)} found, "
                             f"{len(skipped)} smaller than a {self.patch * self.scale}px HR patch")
        self.skipped = skipped
        self.rng = np.random.default_rng(seed)

    def __len__(self):
        return len(self.pairs)

    def batch(self, batch_size):
        lrs, hrs = [], []
        p, s = self.patch, self.scale
        for idx in self.rng.integers(0, len(self.pairs), batch_size):
            lr, hr = self.pairs[idx]
            y = int(self.rng.integers(0, lr.shape[0] - p + 1))
            x = int(self.rng.integers(0, lr.shape[1] - p + 1))
            lr_p, hr_p = lr[y:y + p, x:x + p], hr[y * s:(y + p) * s, x * s:(x + p) * s]
            flips = self.rng.integers(0, 2, 3)
            if flips[0]:
                lr_p, hr_p = lr_p[:, ::-1], hr_p[:, ::-1]
            if flips[1]:
                lr_p, hr_p = lr_p[::-1], hr_p[::-1]
            if flips[2]:
                lr_p, hr_p = lr_p.transpose(1, 0, 2), hr_p.transpose(1, 0, 2)
            lrs.append(lr_p)
            hrs.append(hr_p)
        return self._to_nchw(lrs), self._to_nchw(hrs)

    def _to_nchw(self, patches):
        """uint8 HWC RGB patches -> float NCHW in [0, 1]: RGB, or the Y channel for 1-colour models."""
        batch = np.stack(patches).astype(np.float32) / 255.0
        if self.n_colors == 1:
            batch = rgb_to_ycbcr01(batch)[..., :1]
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)
