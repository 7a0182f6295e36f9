"""Image reading with explicit checks, and atomic PNG writing.

Every image is decoded by Pillow from the file's bytes, so all readers (evaluation,
training, calibration, ``infer.py``) see the same pixels:

- **Damage**: a file that ends before its image data does is refused with the file
  named. PNG chunks are verified (CRC, ``IEND`` present) with ``Image.verify``; any
  format whose decoder runs out of data (a truncated JPEG, libjpeg's "Premature end
  of JPEG file", which OpenCV and a permissive Pillow fill with grey) raises, because
  ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left ``False``. JPEG has no checksum, so
  bytes changed *inside* the entropy-coded data (libjpeg's "Corrupt JPEG data"
  warnings) cannot be detected by any decoder.
- **Orientation**: the EXIF ``Orientation`` tag is applied on read
  (``PIL.ImageOps.exif_transpose``), so a phone photo stored sideways with
  Orientation 6 comes out upright, as every viewer shows it.
- **Colour**: grayscale, palette, CMYK and YCbCr images become 8-bit RGB. An alpha
  channel (RGBA, LA, palette or grayscale/RGB with a ``tRNS`` transparency key) is
  returned separately by :func:`read_image`; :func:`read_rgb` drops it.
- **Bit depth**: 16-bit and float images raise ``ImageError`` (only 8-bit images are
  supported) instead of being silently reduced to 8 bits.
"""
import io
import os

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps

from src.utils.atomic import atomic_target
from src.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

_EXIF_ORIENTATION = 0x0112
_RGB_MODES = ("1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr")
_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")
_DEEP_MODES = {"I;16": "uint16", "I;16L": "uint16", "I;16B": "uint16", "I;16N": "uint16",
               "I": "int32", "F": "float32"}


class ImageError(UserError):
    """An image file cannot be used."""


def _deep_dtype(img):
    """numpy dtype name of a 16-/32-bit image, or None for 8-bit data.

    Pillow opens 16-bit RGB(A) PNG and TIFF files in an 8-bit mode and would drop the
    low byte on load; the decoder's raw mode (``RGB;16B``) still tells the file's depth.
    """
    if img.mode in _DEEP_MODES:
        return _DEEP_MODES[img.mode]
    if img.format not in ("PNG", "TIFF"):  # BMP's 'BGR;16' is 5-6-5 packed 8-bit colour, not 16-bit depth
        return None
    for tile in img.tile or ():
        args = tile[3]
        raw = args if isinstance(args, str) else (args[0] if args and isinstance(args[0], str) else "")
        if ";16" in raw:
            return "uint16"
        if ";32" in raw:
            return "uint32"
    return None


def _open_checked(path):
    """Decode ``path`` with Pillow, refusing damaged, truncated and non-8-bit files.

    Returns a loaded, upright (EXIF orientation applied) ``PIL.Image``.
    """
    if os.path.isdir(path):
        raise ImageError(f"{path} is a folder, not an image; pass an image file or the folder that holds it")
    if not os.path.isfile(path):
        raise ImageError(f"image not found: {path}")
    with open(path, "rb") as fh:
        data = fh.read()
    undecodable = (f"cannot decode image {path} (corrupt or unsupported format); "
                   "re-save it as 8-bit PNG")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            probe.verify()  # PNG: chunk CRCs and a complete chunk sequence up to IEND
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{path}: {exc}; split it into smaller images") from None
    except Image.UnidentifiedImageError:
        raise ImageError(undecodable) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        raise ImageError(f"{path} is truncated or damaged ({exc}); re-download or re-save it") from None
    img = Image.open(io.BytesIO(data))
    dtype = _deep_dtype(img)
    if dtype is not None:
        bits = 8 * np.dtype(dtype).itemsize
        raise ImageError(f"{path} is {dtype} ({bits}-bit); only 8-bit images are supported, "
                         "convert it to 8-bit PNG")
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise ImageError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True in this process, so truncated "
                         f"images would be filled with grey; set it to False to read {path}")
    try:
        img.load()  # raises on a decoder that runs out of data (truncated JPEG, WebP, TIFF, ...)
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        raise ImageError(f"{path} is truncated or damaged ({exc}); re-download or re-save it") from None
    try:
        ImageOps.exif_transpose(img, in_place=True)
    except (OSError, SyntaxError, ValueError, KeyError, TypeError) as exc:
        raise ImageError(f"{path} has an unreadable EXIF orientation ({exc}); re-save it without EXIF") from None
    return img


def _has_alpha(img):
    return img.mode in _ALPHA_MODES or (img.mode in ("P", "L", "RGB") and "transparency" in img.info)


def read_image(path):
    """Read an image file as ``(rgb, alpha)``.

    ``rgb`` is an HxWx3 uint8 RGB array (grayscale expanded to three channels) and
    ``alpha`` an HxW uint8 array (255 = opaque) when the file has an alpha channel or a
    transparency key, else ``None``. EXIF orientation is applied. Raises ``ImageError``
    naming the file when it is missing, undecodable, truncated or damaged, not 8-bit,
    or in a colour mode without an RGB meaning.
    """
    img = _open_checked(path)
    if _has_alpha(img):
        rgba = np.asarray(img.convert("RGBA"))
        return np.array(rgba[:, :, :3]), np.array(rgba[:, :, 3])  # writable, contiguous copies
    if img.mode not in _RGB_MODES:
        raise ImageError(f"{path} has colour mode {img.mode}; convert it to 8-bit RGB PNG")
    return np.array(img if img.mode == "RGB" else img.convert("RGB")), None  # a writable copy


def read_rgb(path):
    """HxWx3 uint8 RGB array of ``path``; alpha, if any, is dropped (see :func:`read_image`)."""
    return read_image(path)[0]


def image_size(path):
    """(width, height) of ``path`` as :func:`read_image` returns it (EXIF orientation applied),
    from the file header without decoding the pixels. Raises ``ImageError`` when unreadable."""
    if not os.path.isfile(path):
        raise ImageError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            width, height = img.size
            if img.format == "PNG":
                # PNG's getexif() decodes the whole image to find an eXIf chunk after the pixels;
                # a header read only sees one before them (where writers put it)
                raw = img.info.get("exif")
                exif = Image.Exif()
                if raw:
                    exif.load(raw)
            else:
                exif = img.getexif()
            orientation = exif.get(_EXIF_ORIENTATION, 1)
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{path}: {exc}; split it into smaller images") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"cannot decode image {path} ({exc}); re-save it as 8-bit PNG") from None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def write_png(path, image, alpha=None):
    """Write an HxWx3 uint8 RGB array (with ``alpha``, HxW uint8, as RGBA; or an HxWx4 RGBA
    array) as PNG via a temporary file and rename. Raises ``ImageError`` if it cannot be written."""
    image = np.asarray(image)
    if alpha is not None:
        image = np.concatenate([image, np.asarray(alpha, dtype=np.uint8)[:, :, None]], axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
        raise ValueError(f"write_png needs HxWx3 or HxWx4 uint8, got {image.shape} {image.dtype}")
    order = [2, 1, 0, 3][:image.shape[2]]  # RGB(A) -> BGR(A) for OpenCV
    with atomic_target(path, suffix=".png") as tmp:
        if image.flags.c_contiguous and image.flags.writeable and image.nbytes > _IN_PLACE_BYTES:
            # a large image (e.g. a 24000x24000 upscale): swap R and B in place, in row blocks, and back
            # afterwards, instead of holding a second copy of it
            _swap_red_blue(image)
            try:
                written = cv2.imwrite(tmp, image)
            finally:
                _swap_red_blue(image)
        else:
            written = cv2.imwrite(tmp, np.ascontiguousarray(image[:, :, order]))
        if not written:
            raise ImageError(f"could not write {path} (disk full or no permission?)")
    return path


_IN_PLACE_BYTES = 64 << 20


def _swap_red_blue(image, rows=512):
    """Swap channels 0 and 2 of the HxWxC uint8 ``image`` in place, ``rows`` rows at a time."""
    for y in range(0, image.shape[0], rows):
        block = image[y:y + rows]
        red = block[:, :, 0].copy()
        block[:, :, 0] = block[:, :, 2]
        block[:, :, 2] = red


def _is_image_name(name):
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def list_images(folder, recursive=False):
    """Sorted paths of the image files (by extension, hidden files skipped) directly in ``folder``,
    or with ``recursive`` in it and all its sub-folders.

    Sub-folders named like images (``HR/x.png/``) are not images and are left out. Symbolic links to
    sub-folders are followed (a data set assembled from links is read whole); a folder reached twice
    (a link loop, or two links to one folder) is read once.
    """
    if recursive:
        found, seen = [], set()
        for root, dirs, files in os.walk(folder, followlinks=True):
            real = os.path.realpath(root)
            if real in seen:
                dirs[:] = []  # a loop or a second way in: its files are already listed
                continue
            seen.add(real)
            found += [os.path.join(root, f) for f in files if _is_image_name(f)]
        return sorted(found)
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if _is_image_name(f) and os.path.isfile(os.path.join(folder, f)))
