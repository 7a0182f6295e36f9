import os

import cv2
import numpy as np
import pytest

from src.data.eval_sets import (DatasetNotFoundError, EvalImage, EvalSet, load_pair, resolve_eval_set,
                                sample_set)
from src.data.image_io import ImageError, read_rgb, write_png
from src.data.imresize import imresize


def _write(path, arr):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), arr)


def test_gray_and_rgba_and_bgr_order(tmp_path):
    gray = (np.arange(48).reshape(6, 8) * 5).astype(np.uint8)
    _write(tmp_path / "g.png", gray)
    out = read_rgb(str(tmp_path / "g.png"))
    assert out.shape == (6, 8, 3) and (out[..., 0] == gray).all() and (out[..., 2] == gray).all()
    bgra = np.zeros((4, 4, 4), np.uint8)
    bgra[..., 0], bgra[..., 2], bgra[..., 3] = 10, 200, 7  # B=10, R=200, alpha=7
    _write(tmp_path / "a.png", bgra)
    rgb = read_rgb(str(tmp_path / "a.png"))
    assert rgb.shape == (4, 4, 3) and (rgb[..., 0] == 200).all() and (rgb[..., 2] == 10).all()


def test_16bit_corrupt_and_missing_files_name_the_file(tmp_path):
    _write(tmp_path / "deep.png", np.zeros((4, 4, 3), np.uint16))
    with pytest.raises(ImageError, match=r"deep\.png is uint16 \(16-bit\)"):
        read_rgb(str(tmp_path / "deep.png"))
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    with pytest.raises(ImageError, match=r"cannot decode image .*bad\.png"):
        read_rgb(str(tmp_path / "bad.png"))
    with pytest.raises(ImageError, match="image not found"):
        read_rgb(str(tmp_path / "nope.png"))


def test_write_png_is_atomic_and_roundtrips(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (9, 7, 3)).astype(np.uint8)
    path = tmp_path / "out" / "x.png"
    write_png(str(path), img)
    write_png(str(path), img[::-1].copy())  # overwrite
    assert (read_rgb(str(path)) == img[::-1]).all()
    assert sorted(os.listdir(tmp_path / "out")) == ["x.png"]


def _benchmark(tmp_path, name="Tiny", sizes=((48, 60), (36, 36))):
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        _write(tmp_path / "benchmark" / name / "HR" / f"im{i}.png", rng.integers(0, 256, (h, w, 3)).astype(np.uint8))
    return str(tmp_path)


def test_missing_dataset_names_path_and_fix(tmp_path):
    with pytest.raises(DatasetNotFoundError) as exc:
        resolve_eval_set(str(tmp_path), "Set5", 2)
    msg = str(exc.value)
    assert os.path.join(str(tmp_path), "benchmark", "Set5", "HR") in msg and "--data_path" in msg
    with pytest.raises(DatasetNotFoundError, match="DIV2K_valid_HR"):
        resolve_eval_set(str(tmp_path), "DIV2K", 2)


def test_lr_made_with_matlab_bicubic_and_cached(tmp_path):
    root = _benchmark(tmp_path, sizes=((50, 61),))
    eval_set = resolve_eval_set(root, "Tiny", 3)
    cache = tmp_path / "cache"
    lr, hr = load_pair(eval_set, eval_set.images[0], 3, gt_mod=12, cache_dir=str(cache))
    assert hr.shape == (48, 60, 3) and lr.shape == (16, 20, 3)
    assert (lr == imresize(hr, 1 / 3)).all()
    cached = [os.path.join(d, f) for d, _, fs in os.walk(cache) for f in fs]
    assert len(cached) == 1 and cached[0].endswith("im0x3.png")
    # a cached file is used as-is on the next call
    marker = lr.copy()
    marker[0, 0] = 255 - marker[0, 0]
    write_png(cached[0], marker)
    lr2, _ = load_pair(eval_set, eval_set.images[0], 3, gt_mod=12, cache_dir=str(cache))
    assert (lr2 == marker).all()


def test_lr_file_takes_precedence_and_is_checked(tmp_path):
    root = _benchmark(tmp_path, sizes=((48, 48),))
    lr_file = np.full((24, 24, 3), 9, np.uint8)
    _write(tmp_path / "benchmark" / "Tiny" / "LR_bicubic" / "X2" / "im0x2.png", lr_file)
    eval_set = resolve_eval_set(root, "Tiny", 2)
    lr, hr = load_pair(eval_set, eval_set.images[0], 2, gt_mod=12)
    assert (lr == 9).all() and hr.shape == (48, 48, 3)
    _write(tmp_path / "benchmark" / "Tiny" / "LR_bicubic" / "X2" / "im0x2.png", lr_file[:10])
    with pytest.raises(ImageError, match="is it the X2 LR"):
        load_pair(resolve_eval_set(root, "Tiny", 2), eval_set.images[0], 2, gt_mod=12)


def test_image_smaller_than_scale_is_rejected(tmp_path):
    _write(tmp_path / "tiny.png", np.zeros((2, 2, 3), np.uint8))
    ev = EvalSet("T", str(tmp_path), [EvalImage("tiny", str(tmp_path / "tiny.png"))])
    with pytest.raises(ImageError, match=r"tiny\.png is 2x2, smaller than x3"):
        load_pair(ev, ev.images[0], 3, gt_mod=1)


def test_sample_set_is_bundled():
    ev = sample_set()
    assert len(ev.images) >= 5
    lr, hr = load_pair(ev, ev.images[0], 2, gt_mod=12)
    assert hr.shape[0] == 2 * lr.shape[0] and hr.shape[2] == 3


def test_div2k_official_layout(tmp_path):
    rng = np.random.default_rng(3)
    hr = rng.integers(0, 256, (52, 70, 3)).astype(np.uint8)
    _write(tmp_path / "DIV2K_valid_HR" / "0801.png", hr[:, :, ::-1])
    _write(tmp_path / "DIV2K_valid_HR" / "0802.png", hr[:, :, ::-1])
    official_lr = rng.integers(0, 256, (26, 35, 3)).astype(np.uint8)
    _write(tmp_path / "DIV2K_valid_LR_bicubic" / "X2" / "0801x2.png", official_lr[:, :, ::-1])
    ev = resolve_eval_set(str(tmp_path), "DIV2K", 2)
    assert [i.name for i in ev.images] == ["0801", "0802"]
    assert ev.images[0].lr_path.endswith(os.path.join("X2", "0801x2.png")) and ev.images[1].lr_path is None
    lr, hr_c = load_pair(ev, ev.images[0], 2, gt_mod=12)
    assert hr_c.shape == (48, 60, 3) and (lr == official_lr[:24, :30]).all()
    lr2, _ = load_pair(ev, ev.images[1], 2, gt_mod=12)
    assert (lr2 == imresize(hr[:48, :60], 0.5)).all()
