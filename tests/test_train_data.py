"""Training data: the position-addressed patch stream, sharding, layouts, caching, bad folders."""
import os

import cv2
import numpy as np
import pytest

from conftest import write_smooth_images
from src.data.image_io import ImageError
from src.data.imresize import imresize
from src.data.train_set import PatchSource, StreamSampler, TrainPairs


def _pairs(tmp_path, count=5, size=64, scale=2, patch=8):
    write_smooth_images(tmp_path / "hr", count, size)
    return TrainPairs(str(tmp_path / "hr"), scale, patch, cache_dir=str(tmp_path / "cache"))


def test_stream_is_a_function_of_position(tmp_path):
    pairs = _pairs(tmp_path)
    a, b = PatchSource(pairs, seed=3), PatchSource(pairs, seed=3)
    for pos in (0, 7, 123, 4):
        for x, y in zip(a[pos], b[pos]):
            np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0][0], PatchSource(pairs, seed=4)[0][0])
    # a resumed sampler yields exactly the tail of the full stream
    full = list(StreamSampler(4, 10))
    assert list(StreamSampler(4, 10, start_step=6)) == full[6 * 4:]


def test_ranks_split_every_global_batch():
    world, batch, steps = 2, 3, 5
    shards = [list(StreamSampler(batch, steps, rank=r, world=world)) for r in range(world)]
    single = list(StreamSampler(batch * world, steps))
    assert not set(shards[0]) & set(shards[1])
    for step in range(steps):
        got = sorted(shards[0][step * batch:(step + 1) * batch] + shards[1][step * batch:(step + 1) * batch])
        assert got == single[step * batch * world:(step + 1) * batch * world]


def test_enlarge_ratio_repeats_each_image_per_epoch(tmp_path):
    pairs = _pairs(tmp_path, count=4)
    source = PatchSource(pairs, seed=0, enlarge_ratio=3)
    assert len(source) == 12
    counts = np.bincount([source.image_of(p) for p in range(12)], minlength=4)
    assert counts.tolist() == [3, 3, 3, 3]
    assert [source.image_of(p) for p in range(12)] != [source.image_of(p) for p in range(12, 24)]


def test_patches_are_aligned_and_augmented_consistently(tmp_path):
    pairs = _pairs(tmp_path, count=2, size=96, scale=2, patch=16)
    source = PatchSource(pairs, seed=1, channel_shuffle=True)
    orders = set()
    for pos in range(24):
        lr, hr = source[pos]
        assert lr.shape == (3, 16, 16) and hr.shape == (3, 32, 32) and lr.dtype == np.float32
        down = imresize((hr.transpose(1, 2, 0) * 255).round().astype(np.uint8), 0.5).astype(np.float32) / 255
        inner = np.abs(down[3:-3, 3:-3] - lr.transpose(1, 2, 0)[3:-3, 3:-3])
        assert inner.mean() < 0.01, pos  # the HR crop (after the same flips/shuffle) matches the LR crop
        orders.add(tuple(np.argsort(lr.reshape(3, -1).mean(1))))
    assert len(orders) > 1  # channel order changes between samples


def test_y_channel_patches(tmp_path):
    pairs = _pairs(tmp_path, count=1)
    lr, hr = PatchSource(pairs, n_colors=1)[0]
    assert lr.shape == (1, 8, 8) and hr.shape == (1, 16, 16)
    assert 0.0 <= lr.min() and lr.max() <= 1.0


def test_lr_is_cached_and_reused(tmp_path):
    pairs = _pairs(tmp_path, count=2)
    cached = sorted(os.listdir(tmp_path / "cache" / "train_lr" / "X2"))
    assert len(cached) == 2
    # a cache entry is used as is: overwrite one with a marker image of the right size
    path = tmp_path / "cache" / "train_lr" / "X2" / cached[0]
    cv2.imwrite(str(path), np.full((32, 32, 3), 7, np.uint8))
    again = TrainPairs(str(tmp_path / "hr"), 2, 8, cache_dir=str(tmp_path / "cache"))
    assert any((again.pair(i)[0] == 7).all() for i in range(len(again))) and pairs.in_memory


def test_div2k_official_layout_reads_the_given_lr(tmp_path):
    root = tmp_path / "DIV2K"
    write_smooth_images(root / "DIV2K_train_HR", 2, 64)
    for name in os.listdir(root / "DIV2K_train_HR"):
        stem = os.path.splitext(name)[0]
        (root / "DIV2K_train_LR_bicubic" / "X2").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "DIV2K_train_LR_bicubic" / "X2" / f"{stem}x2.png"), np.full((32, 32, 3), 9, np.uint8))
    for path in (root, root / "DIV2K_train_HR"):
        pairs = TrainPairs(str(path), 2, 8, cache_dir=str(tmp_path / "c"))
        assert pairs.source.startswith("DIV2K") and (pairs.pair(0)[0] == 9).all()
    assert not (tmp_path / "c").exists()  # nothing made with bicubic


def test_bad_training_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="training folder not found"):
        TrainPairs(str(tmp_path / "missing"), 2, 8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="no image files found"):
        TrainPairs(str(tmp_path / "empty"), 2, 8)
    write_smooth_images(tmp_path / "small", 2, 16)
    (tmp_path / "small" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ImageError, match=r"2 smaller than a 64px HR patch \(lower --patch_size\), 1 unreadable"):
        TrainPairs(str(tmp_path / "small"), 2, 32)
    pairs = TrainPairs(str(tmp_path / "small"), 2, 4)  # the broken file is reported, the rest used
    assert len(pairs) == 2 and len(pairs.unreadable) == 1


def test_partial_memory_cache_reads_the_rest_from_disk(tmp_path):
    write_smooth_images(tmp_path / "hr", 3, 64)
    pairs = TrainPairs(str(tmp_path / "hr"), 2, 8, cache_dir=str(tmp_path / "c"), max_memory_gb=64 * 64 * 3 * 1.3 / 2 ** 30)
    assert not pairs.in_memory and len(pairs._cache) == 1  # pylint: disable=protected-access
    full = TrainPairs(str(tmp_path / "hr"), 2, 8, cache_dir=str(tmp_path / "c"))
    for i in range(3):
        np.testing.assert_array_equal(pairs.pair(i)[1], full.pair(i)[1])
