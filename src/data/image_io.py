"""Image reading with explicit checks, and atomic PNG writing.

``read_rgb`` always returns an HxWx3 uint8 RGB array: grayscale is expanded
to three channels and alpha is dropped. 16-bit and unreadable files raise
``ImageError`` naming the file.
"""
import os

import cv2
import numpy as np

from src.utils.atomic import atomic_target

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageError(ValueError):
    """An image file cannot be used."""


def read_rgb(path):
    if not os.path.isfile(path):
        raise ImageError(f"image not found: {path}")
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageError(f"cannot decode image {path} (corrupt or unsupported format); re-save it as 8-bit PNG")
    if img.dtype != np.uint8:
        raise ImageError(f"{path} is {img.dtype} ({8 * img.dtype.itemsize}-bit); "
                         "only 8-bit images are supported, convert it to 8-bit PNG")
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[:, :, None], 3, axis=2))
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise ImageError(f"{path} has unsupported shape {img.shape}; expected gray, RGB or RGBA")
    if img.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(img, 3, axis=2))
    return np.ascontiguousarray(img[:, :, 2::-1])  # BGR(A) -> RGB, alpha dropped


def write_png(path, rgb):
    """Write an HxWx3 uint8 RGB array as PNG via a temp file and rename."""
    with atomic_target(path, suffix=".png") as tmp:
        if not cv2.imwrite(tmp, np.ascontiguousarray(rgb[:, :, ::-1])):
            raise ImageError(f"could not write {path} (disk full or no permission?)")
    return path


def list_images(folder):
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."))
