"""Training data: (LR, HR) image pairs, random patches, and the MindSpore pipeline.

Sources (``train_path``):
- the official DIV2K layout: ``DIV2K_train_HR/`` with ``DIV2K_train_LR_bicubic/X{s}/``
  beside it (``0001x2.png``); ``train_path`` may be the DIV2K root or its HR folder;
- any folder (searched recursively) of HR images: the LR image is made with the
  project's MATLAB-compatible bicubic and cached as PNG under ``cache_dir``, keyed on
  the HR pixels (``src.data.pairs.content_key``), so a replaced HR image with the same
  name and size never reuses the old LR.

DIV2K LR files are checked against their HR image when the pairs are built: an LR
file whose size is not the x{s} LR size (``src.data.pairs.check_lr_size``, e.g. x2
files under ``X3``) stops with an error naming it instead of training on misaligned
crops.

Each sample is a random LR crop of ``patch_size`` with the aligned HR crop, random
horizontal / vertical flips and transposition, and (optionally) a random RGB channel
order. Samples are addressed by their position in the training stream, not by an
image index: position ``p`` picks image ``perm_e[p mod n]`` of a seeded permutation
for epoch ``e = p // n`` and draws its crop and flips from ``default_rng([seed, p])``.
The stream is therefore a pure function of ``(seed, p)``: resuming at step ``k``
(``StreamSampler(start_step=k)``) continues exactly where an uninterrupted run
would be, with any number of workers, and rank ``r`` of ``w`` data-parallel
workers takes its own slice of every global batch.
"""
import os

import numpy as np

from src.data.image_io import ImageError, image_size, list_images, read_rgb
from src.data.imresize import bicubic_lr
from src.data.pairs import check_lr_size, content_key
from src.data.transforms import modcrop, rgb_to_ycbcr01
from src.errors import InputNotFoundError

DIV2K_HR = "DIV2K_train_HR"
DIV2K_LR = "DIV2K_train_LR_bicubic"


def find_images(root):
    """Every image under the training folder ``root`` (sub-folders included), sorted; FileNotFoundError
    naming --train_path when it is not a folder."""
    if not os.path.isdir(root):
        raise InputNotFoundError(f"training folder not found: {root} (set --train_path)")
    return list_images(root, recursive=True)


def _div2k_dirs(root, scale):
    """(hr_dir, lr_dir) when ``root`` is a DIV2K root or its HR folder with the X{s} LR folder beside it."""
    for hr_dir in (os.path.join(root, DIV2K_HR), root):
        if os.path.basename(os.path.normpath(hr_dir)) != DIV2K_HR or not os.path.isdir(hr_dir):
            continue
        lr_dir = os.path.join(os.path.dirname(os.path.normpath(hr_dir)), DIV2K_LR, f"X{scale}")
        if os.path.isdir(lr_dir):
            return hr_dir, lr_dir
    return None


def _lr_cache_path(cache_dir, hr_path, scale, key):
    """``<cache_dir>/train_lr/X<s>/<stem>-<key>.png``; ``key``: content key of the mod-cropped HR."""
    stem = os.path.splitext(os.path.basename(hr_path))[0]
    return os.path.join(cache_dir, "train_lr", f"X{scale}", f"{stem}-{key}.png")


class TrainPairs:
    """All usable (LR, HR) uint8 RGB pairs of ``root`` for ``scale``, in memory when they fit."""

    def __init__(self, root, scale, patch_size, cache_dir=None, max_memory_gb=4.0):
        self.scale, self.patch = int(scale), int(patch_size)
        self.cache_dir = cache_dir
        div2k = _div2k_dirs(root, self.scale)
        paths = find_images(div2k[0] if div2k else root)
        self.source = "DIV2K official layout" if div2k else "HR folder (LR by MATLAB bicubic, cached)"
        self.lr_paths = {}
        if div2k:
            for path in paths:
                stem = os.path.splitext(os.path.basename(path))[0]
                self.lr_paths[path] = os.path.join(div2k[1], f"{stem}x{self.scale}.png")
        self.paths, self.skipped, self.unreadable = [], [], []
        self._cache = {}
        self._keys = {}  # path -> ((size, mtime_ns, inode), content key)
        need = self.patch * self.scale
        budget = max_memory_gb * 2 ** 30
        for path in paths:
            try:
                hr = read_rgb(path)
            except ImageError as exc:
                self.unreadable.append(f"{os.path.basename(path)} ({exc})")
                continue
            if min(hr.shape[:2]) < need:
                self.skipped.append(os.path.basename(path))
                continue
            if path in self.lr_paths:
                self._check_lr(path, hr.shape)
            self.paths.append(path)
            pair_bytes = hr.size * (1 + 1 / self.scale ** 2)
            if pair_bytes <= budget:  # decoded pairs stay in memory while they fit
                self._cache[len(self.paths) - 1] = self._load(len(self.paths) - 1, hr)
                budget -= pair_bytes
        if not self.paths:
            detail = f"{len(paths)} images found" if paths else "no image files found"
            if paths:
                detail += (f", {len(self.skipped)} smaller than a {need}px HR patch (lower --patch_size)"
                           f", {len(self.unreadable)} unreadable")
            raise ImageError(f"no usable training images in {root}: {detail}")
        self.in_memory = len(self._cache) == len(self.paths)

    def __len__(self):
        return len(self.paths)

    def _lr_file(self, path):
        """The DIV2K LR file of HR ``path``; ``ImageError`` when it is missing."""
        lr_path = self.lr_paths[path]
        if not os.path.isfile(lr_path):
            raise ImageError(f"{lr_path} is missing: DIV2K LR X{self.scale} must hold one file per HR image")
        return lr_path

    def _check_lr(self, path, hr_shape):
        """The DIV2K LR file of ``path`` exists and has the x``scale`` LR size (header read only)."""
        lr_path = self._lr_file(path)
        width, height = image_size(lr_path)
        check_lr_size(lr_path, (height, width), path, hr_shape, self.scale, self.scale)

    def _content_key(self, path, hr):
        """Content key of the cropped HR ``hr`` read from ``path``, hashed once per file version in
        this run (images that do not fit in memory are re-read every epoch; 20 ms per 2K image)."""
        info = os.stat(path)
        signature = (info.st_size, info.st_mtime_ns, info.st_ino)
        known = self._keys.get(path)
        if known is None or known[0] != signature:
            known = self._keys[path] = (signature, content_key(hr))
        return known[1]

    def _load(self, index, hr=None):
        path = self.paths[index]
        hr_full = read_rgb(path) if hr is None else hr
        hr = modcrop(hr_full, self.scale)
        if path not in self.lr_paths:
            cached = _lr_cache_path(self.cache_dir, path, self.scale, self._content_key(path, hr)) \
                if self.cache_dir else None
            return bicubic_lr(hr, self.scale, cached), hr
        lr_path = self._lr_file(path)
        lr = read_rgb(lr_path)
        check_lr_size(lr_path, lr.shape, path, hr_full.shape, self.scale, self.scale)
        h, w = hr.shape[0] // self.scale, hr.shape[1] // self.scale
        return lr[:h, :w], hr

    def pair(self, index):
        cached = self._cache.get(index)
        return cached if cached is not None else self._load(index)


class PatchSource:
    """Random-access sample source for ``GeneratorDataset``: ``source[position] -> (lr, hr)``.

    Arrays are float32 CHW in [0, 1], RGB or (``n_colors=1``) the BT.601 Y channel.
    """

    def __init__(self, pairs, seed=0, n_colors=3, channel_shuffle=False, enlarge_ratio=1):
        self.pairs, self.seed, self.n_colors = pairs, int(seed), int(n_colors)
        self.epoch_size = len(pairs) * max(1, int(enlarge_ratio))
        self.channel_shuffle = bool(channel_shuffle) and self.n_colors == 3
        self._perm = (-1, None)  # (epoch, permutation), replaced as one object: loader threads share it

    def __len__(self):
        return self.epoch_size

    def image_of(self, position):
        """Image index of a stream position: every image ``enlarge_ratio`` times per epoch, shuffled."""
        epoch = position // self.epoch_size
        cached_epoch, perm = self._perm
        if cached_epoch != epoch:
            perm = np.random.default_rng([self.seed, 0x5eed, epoch]).permutation(self.epoch_size)
            self._perm = (epoch, perm)
        return int(perm[position % self.epoch_size]) % len(self.pairs)

    def __getitem__(self, position):
        position = int(position)
        lr, hr = self.pairs.pair(self.image_of(position))
        rng = np.random.default_rng([self.seed, position])
        p, s = self.pairs.patch, self.pairs.scale
        y = int(rng.integers(0, lr.shape[0] - p + 1))
        x = int(rng.integers(0, lr.shape[1] - p + 1))
        lr_p, hr_p = lr[y:y + p, x:x + p], hr[y * s:(y + p) * s, x * s:(x + p) * s]
        hflip, vflip, transpose = rng.integers(0, 2, 3)
        if hflip:
            lr_p, hr_p = lr_p[:, ::-1], hr_p[:, ::-1]
        if vflip:
            lr_p, hr_p = lr_p[::-1], hr_p[::-1]
        if transpose:
            lr_p, hr_p = lr_p.transpose(1, 0, 2), hr_p.transpose(1, 0, 2)
        if self.channel_shuffle:
            order = rng.permutation(3)
            lr_p, hr_p = lr_p[..., order], hr_p[..., order]
        return self._to_chw(lr_p), self._to_chw(hr_p)

    def _to_chw(self, patch):
        arr = patch.astype(np.float32) / 255.0
        if self.n_colors == 1:
            arr = rgb_to_ycbcr01(arr)[..., :1]
        return np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32)


class StreamSampler:
    """Stream positions of ``rank``'s share of the global batches ``start_step .. total_steps - 1``.

    Global batch ``k`` holds positions ``k*B*w .. (k+1)*B*w - 1``; rank ``r`` takes
    ``k*B*w + r*B .. + B - 1``.
    """

    def __init__(self, batch_size, total_steps, start_step=0, rank=0, world=1):
        self.batch, self.total, self.start = int(batch_size), int(total_steps), int(start_step)
        self.rank, self.world = int(rank), int(world)

    def __len__(self):
        return max(0, self.total - self.start) * self.batch

    def __iter__(self):
        for step in range(self.start, self.total):
            base = (step * self.world + self.rank) * self.batch
            yield from range(base, base + self.batch)


def create_train_dataset(pairs, data, n_colors, steps, rank=0, world=1):
    """Batched ``GeneratorDataset`` of ``(lr, hr)`` for the steps ``steps = (seed, start_step, total_steps)``
    ask for; ``data``: the training data section (:class:`~src.engine.sections.TrainData`)."""
    import mindspore.dataset as ds  # pylint: disable=import-outside-toplevel
    seed, start_step, total_steps = steps
    source = PatchSource(pairs, seed=seed, n_colors=n_colors, channel_shuffle=data.channel_shuffle,
                         enlarge_ratio=data.dataset_enlarge_ratio)
    sampler = StreamSampler(data.batch_size, total_steps, start_step, rank, world)
    dataset = ds.GeneratorDataset(source, column_names=["lr", "hr"], sampler=sampler,
                                  num_parallel_workers=max(1, int(data.num_workers)), python_multiprocessing=False)
    return dataset.batch(data.batch_size, drop_remainder=True), source
