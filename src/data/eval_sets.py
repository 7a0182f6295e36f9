"""Evaluation datasets: DIV2K validation, benchmark folders, and the built-in sample set.

Layouts (``data_path`` is the root):
- ``DIV2K``: ``DIV2K_valid_HR/0801.png`` ... and optional
  ``DIV2K_valid_LR_bicubic/X<s>/0801x<s>.png`` (official layout).
- any benchmark ``<Set>``: ``benchmark/<Set>/HR/*.png`` and optional
  ``benchmark/<Set>/LR_bicubic/X<s>/<name>x<s>.png``.
- ``Samples``: photos bundled with scikit-image (no download), used when the
  shipped defaults find no DIV2K.

When an LR file is absent it is made from the (mod-cropped) HR image with the
MATLAB-compatible bicubic and cached under ``cache_dir``, keyed on the HR pixels
(a replaced HR image never reuses the old LR). A given LR file must have the size
of the x<s> LR of its HR image (``src.data.pairs.check_lr_size``): LR files of
another scale are refused, not cropped and scored.

Alpha: evaluation drops an alpha channel and scores the stored RGB values, as
BasicSR (``cv2.imread`` in colour mode) and MATLAB's ``imread`` do; the images
concerned are listed in the report (``alpha_dropped``).
"""
import glob
import hashlib
import os
from dataclasses import dataclass, field
from typing import List, Optional

from src.data.image_io import ImageError, list_images, read_image
from src.data.imresize import bicubic_lr
from src.data.pairs import check_lr_size, content_key
from src.data.transforms import gt_multiple, modcrop
from src.errors import InputNotFoundError

SAMPLE_SET = "Samples"
# Real photographs that ship inside the scikit-image wheel (no network needed).
_SAMPLE_FILES = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "ihc.png",
                 "motorcycle_left.png", "rocket.jpg")


class DatasetNotFoundError(InputNotFoundError):
    """A configured dataset folder does not exist or holds no images."""


@dataclass
class EvalImage:
    """One evaluation image: ``name`` (HR file stem), its HR file and, if present, its LR file.

    ``alpha_dropped`` is filled by :func:`load_pair`: which of ``"HR"``/``"LR"`` had an alpha
    channel that was dropped (metrics use the stored RGB values).
    """
    name: str
    hr_path: str
    lr_path: Optional[str] = None
    alpha_dropped: tuple = ()


@dataclass
class EvalSet:
    name: str
    hr_dir: str
    images: List[EvalImage] = field(default_factory=list)
    note: str = ""


def _howto(name, data_path):
    if name == "DIV2K":
        return (f"download DIV2K_valid_HR (and optionally DIV2K_valid_LR_bicubic) and unzip into {data_path}, "
                "or set --data_path / --eval_datasets")
    return (f"put the HR images in {os.path.join(data_path, 'benchmark', name, 'HR')} "
            "(LR is made with MATLAB bicubic if absent), or set --data_path / --eval_datasets")


def dataset_dirs(data_path, name, scale):
    """(hr_dir, lr_dir, lr_name_pattern) for a dataset name."""
    if name == "DIV2K":
        return (os.path.join(data_path, "DIV2K_valid_HR"),
                os.path.join(data_path, "DIV2K_valid_LR_bicubic", f"X{scale}"), "{stem}x{scale}.png")
    root = os.path.join(data_path, "benchmark", name)
    return os.path.join(root, "HR"), os.path.join(root, "LR_bicubic", f"X{scale}"), "{stem}x{scale}.png"


def dataset_exists(data_path, name, scale=2):
    if name == SAMPLE_SET:
        return True
    hr_dir = dataset_dirs(data_path, name, scale)[0]
    return os.path.isdir(hr_dir) and bool(list_images(hr_dir))


def resolve_eval_set(data_path, name, scale):
    if name == SAMPLE_SET:
        return sample_set()
    hr_dir, lr_dir, pattern = dataset_dirs(data_path, name, scale)
    if not os.path.isdir(hr_dir):
        raise DatasetNotFoundError(f"dataset {name} not found: {hr_dir} does not exist; {_howto(name, data_path)}")
    files = list_images(hr_dir)
    if not files:
        raise DatasetNotFoundError(f"dataset {name}: no images in {hr_dir}; {_howto(name, data_path)}")
    images = []
    for path in files:
        stem = os.path.splitext(os.path.basename(path))[0]
        lr_path = os.path.join(lr_dir, pattern.format(stem=stem, scale=scale))
        images.append(EvalImage(stem, path, lr_path if os.path.isfile(lr_path) else None))
    return EvalSet(name, hr_dir, images)


def sample_set():
    import skimage  # pylint: disable=import-outside-toplevel
    folder = os.path.join(os.path.dirname(skimage.__file__), "data")
    images = [EvalImage(os.path.splitext(f)[0], os.path.join(folder, f))
              for f in _SAMPLE_FILES if os.path.isfile(os.path.join(folder, f))]
    if not images:
        raise DatasetNotFoundError(f"no bundled sample images found in {folder}; reinstall scikit-image")
    return EvalSet(SAMPLE_SET, folder, images,
                   note=f"built-in sample set: {len(images)} photos bundled with scikit-image")


def _cache_path(cache_dir, eval_set, image, scale, multiple, key):
    """``<cache_dir>/lr_bicubic/<set>-<dir hash>/X<s>_mod<m>/<HR content key>/<name>x<s>.png``."""
    tag = hashlib.sha1(os.path.abspath(eval_set.hr_dir).encode()).hexdigest()[:8]
    return os.path.join(cache_dir, "lr_bicubic", f"{eval_set.name}-{tag}", f"X{scale}_mod{multiple}",
                        key, f"{image.name}x{scale}.png")


def _drop_stale(cache_path):
    """Remove this image's entries made from earlier HR contents (other content keys, or the
    unkeyed layout of earlier versions)."""
    key_dir = os.path.dirname(cache_path)
    parent, name = os.path.dirname(key_dir), os.path.basename(cache_path)
    if os.path.isfile(os.path.join(parent, name)):
        try:
            os.remove(os.path.join(parent, name))
        except OSError:
            pass
    for stale in glob.glob(os.path.join(glob.escape(parent), "*", glob.escape(name))):
        stale_dir = os.path.dirname(stale)
        if stale_dir != key_dir and not os.path.islink(stale_dir):
            try:
                os.remove(stale)
                if not os.listdir(stale_dir):
                    os.rmdir(stale_dir)
            except OSError:
                pass  # another process may be cleaning up too; a stale entry is never read anyway


def load_pair(eval_set, image, scale, gt_mod=12, cache_dir=None):
    """Return (lr, hr) uint8 RGB arrays following the evaluation protocol.

    HR is cropped to a multiple of lcm(gt_mod, scale). A given LR file must be the x``scale``
    LR of the HR image (size between ``H_crop/scale`` and ``ceil(H/scale)`` in each dimension,
    else ``ImageError``) and is cropped to ``H_crop/scale``; otherwise LR = MATLAB-bicubic(HR,
    1/scale), cached under ``cache_dir`` keyed on the cropped HR pixels. Alpha channels are
    dropped and recorded in ``image.alpha_dropped``.
    """
    hr_full, hr_alpha = read_image(image.hr_path)
    multiple = gt_multiple(gt_mod, scale)
    if min(hr_full.shape[:2]) < multiple:
        raise ImageError(f"{image.hr_path} is {hr_full.shape[1]}x{hr_full.shape[0]}, smaller than "
                         f"x{scale} with HR crop multiple {multiple}; remove it or lower --gt_mod")
    hr = modcrop(hr_full, multiple)
    lr_h, lr_w = hr.shape[0] // scale, hr.shape[1] // scale
    dropped = ["HR"] if hr_alpha is not None else []
    if image.lr_path:
        lr, lr_alpha = read_image(image.lr_path)
        check_lr_size(image.lr_path, lr.shape, image.hr_path, hr_full.shape, scale, multiple)
        image.alpha_dropped = tuple(dropped + (["LR"] if lr_alpha is not None else []))
        return lr[:lr_h, :lr_w], hr
    image.alpha_dropped = tuple(dropped)
    cached = _cache_path(cache_dir, eval_set, image, scale, multiple, content_key(hr)) if cache_dir else None
    if cached and not os.path.isfile(cached):
        _drop_stale(cached)
    return bicubic_lr(hr, scale, cached), hr
