"""LR/HR pairs and caches (issue 13 items 5, 6, 11): LR files of the wrong scale are refused in
evaluation and training, LR caches follow the HR content, and an image too small for SSIM is
named while the other sets' results are kept."""
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import requires_shared, shared_dir
from model_utils.config import get_config
from src.data.eval_sets import load_pair, resolve_eval_set
from src.data.image_io import ImageError, read_rgb
from src.data.imresize import imresize
from src.data.pairs import check_lr_size, lr_size_range
from src.data.train_set import TrainPairs
from src.data.transforms import modcrop
from src.engine.evaluate import run_evaluation
from src.models import create_model
from src.weights.checkpoint import model_meta, save_checkpoint


def _smooth(h, w, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(1, h // 6), max(1, w // 6), 3)).astype(np.uint8)
    return np.array(Image.fromarray(small).resize((w, h), Image.BICUBIC))


def _save(path, arr):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    Image.fromarray(arr).save(str(path))


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs_ckpt")
    out = {}
    for scale in (2, 3, 4):
        net = create_model("abpn", "M2C8", scale)
        out[scale] = str(root / f"abpn_x{scale}.ckpt")
        save_checkpoint(net, out[scale], meta=model_meta(net))
    return out


def _eval_args(ckpt, scale, data, tmp_path, sets, *extra):
    return ["--model", "abpn", "--variant", "M2C8", "--scale", str(scale), "--pre_trained", ckpt,
            "--data_path", str(data), "--eval_datasets", sets, "--cache_dir", str(tmp_path / "cache"),
            "--output_path", str(tmp_path / "out"), "--result_file", str(tmp_path / "r.json"), *extra]


def _eval_main(args, capsys):
    import importlib  # pylint: disable=import-outside-toplevel
    code = importlib.import_module("eval").main(args)
    return code, capsys.readouterr()


def _error_lines(captured):
    return [l for l in captured.err.splitlines() if l.startswith("error:")]


# ---------------------------------------------------------------- item 5: LR files of the right scale

SET5_LIKE = {"baby": (96, 96), "bird": (72, 72), "butterfly": (60, 60), "head": (66, 69), "woman": (86, 57)}


def _set5_like(root, lr_scale, folder_scale):
    """Benchmark ``Set5x`` whose ``LR_bicubic/X<folder_scale>`` holds x``lr_scale`` LR files."""
    for i, (name, (h, w)) in enumerate(SET5_LIKE.items()):
        hr = _smooth(h, w, seed=i)
        _save(root / "benchmark" / "Set5x" / "HR" / f"{name}.png", hr)
        lr = imresize(modcrop(hr, lr_scale), 1 / lr_scale)
        _save(root / "benchmark" / "Set5x" / "LR_bicubic" / f"X{folder_scale}" / f"{name}x{folder_scale}.png", lr)


def test_x2_lr_under_x3_is_refused_by_evaluation(tmp_path, ckpts, capsys):
    _set5_like(tmp_path / "data", lr_scale=2, folder_scale=3)
    code, captured = _eval_main(_eval_args(ckpts[3], 3, tmp_path / "data", tmp_path, "Set5x"), capsys)
    err = _error_lines(captured)
    assert code == 2 and len(err) == 1, captured.err
    babyx3 = str(tmp_path / "data" / "benchmark" / "Set5x" / "LR_bicubic" / "X3" / "babyx3.png")
    # the file, its size, the HR size, the expected size and the likely cause
    assert f"{babyx3} is 48x48 but the x3 LR of" in err[0] and "(96x96) must be 32x32" in err[0]
    assert "looks like x2 LR in the wrong scale folder" in err[0]
    report = json.loads((tmp_path / "r_failed.json").read_text())  # a failed run's report: beside, not over r.json
    assert report["results"] == {} and len(report["failed"]["Set5x"]["failed_images"]) == 5


def test_right_scale_lr_files_are_scored(tmp_path, ckpts):
    """Positive control: x3 LR under X3 (sizes multiple of 12) scores as LR made on the fly."""
    for i, (name, (h, w)) in enumerate((("a", (48, 60)), ("b", (36, 36)))):
        hr = _smooth(h, w, seed=i)
        for set_name in ("Given", "Made"):
            _save(tmp_path / "data" / "benchmark" / set_name / "HR" / f"{name}.png", hr)
        _save(tmp_path / "data" / "benchmark" / "Given" / "LR_bicubic" / "X3" / f"{name}x3.png", imresize(hr, 1 / 3))
    report = run_evaluation(get_config(_eval_args(ckpts[3], 3, tmp_path / "data", tmp_path, "Given,Made")),
                            log=lambda *_: None)
    assert report["results"]["Given"]["psnr"] == report["results"]["Made"]["psnr"]


@pytest.mark.parametrize("lr_hw,ok", [
    ((17, 21), True),    # ceil(50/3) x ceil(61/3): MATLAB imresize of the uncropped HR
    ((16, 20), True),    # floor: LR of HR cropped to a multiple of 3 (or of 12: 48x60 -> 16x20)
    ((18, 21), False),   # one row too many
    ((17, 22), False),   # one column too many
    ((15, 20), False),   # one row too few
    ((25, 31), False),   # x2 LR
    ((13, 16), False),   # x4 LR
])
def test_lr_size_must_match_in_both_directions(lr_hw, ok):
    assert lr_size_range((50, 61), 3, 12) == ((16, 17), (20, 21))
    if ok:
        check_lr_size("lr.png", lr_hw, "hr.png", (50, 61), 3, 12)
    else:
        with pytest.raises(ImageError, match=r"^lr\.png is \d+x\d+ but the x3 LR of hr\.png \(61x50\) must be "
                                             r"20\.\.21x16\.\.17 "):
            check_lr_size("lr.png", lr_hw, "hr.png", (50, 61), 3, 12)


def test_load_pair_refuses_larger_lr(tmp_path):
    _set5_like(tmp_path, lr_scale=2, folder_scale=3)
    ev = resolve_eval_set(str(tmp_path), "Set5x", 3)
    with pytest.raises(ImageError, match=r"womanx3\.png is 28x43"):
        load_pair(ev, ev.images[-1], 3, gt_mod=12)


def _div2k(root, lr_scale, folder_scale, count=2, size=(64, 72)):
    for i in range(count):
        hr = _smooth(*size, seed=i)
        _save(root / "DIV2K_train_HR" / f"{i:04d}.png", hr)
        _save(root / "DIV2K_train_LR_bicubic" / f"X{folder_scale}" / f"{i:04d}x{folder_scale}.png",
              imresize(hr, 1 / lr_scale))


def test_training_refuses_x2_lr_under_x3(tmp_path):
    _div2k(tmp_path / "DIV2K", lr_scale=2, folder_scale=3)
    with pytest.raises(ImageError, match=r"0000x3\.png is 36x32 but the x3 LR of .*0000\.png \(72x64\) must be "
                                         r"24x21\.\.22 .*looks like x2 LR in the wrong scale folder"):
        TrainPairs(str(tmp_path / "DIV2K"), 3, 8)
    # and x4 LR under X3 (too small), with the images not held in memory
    _div2k(tmp_path / "D4", lr_scale=4, folder_scale=3)
    with pytest.raises(ImageError, match=r"0000x3\.png is 18x16 .*looks like x4 LR"):
        TrainPairs(str(tmp_path / "D4"), 3, 8, max_memory_gb=0)


def test_training_accepts_ceil_sized_div2k_lr(tmp_path):
    _div2k(tmp_path / "DIV2K", lr_scale=3, folder_scale=3, size=(64, 71))  # LR ceil: 22x24
    pairs = TrainPairs(str(tmp_path / "DIV2K"), 3, 8)
    lr, hr = pairs.pair(0)
    assert lr.shape == (21, 23, 3) and hr.shape == (63, 69, 3)


@requires_shared
def test_set5_x2_lr_under_x3_refused_and_x3_lr_scores_33_53(tmp_path, capsys):
    """The issue's example on real Set5 with the published ABPN x3 (33.53 dB)."""
    from src.weights.convert_cli import main as convert_main  # pylint: disable=import-outside-toplevel
    shared = shared_dir()
    ckpt = str(tmp_path / "abpn.ckpt")
    assert convert_main(["--src", os.path.join(shared, "weights", "etds_repo_x3", "ABPN_M4C28_x3.pth"),
                         "--dst", ckpt, "--model", "abpn", "--variant", "M4C28", "--scale", "3"]) == 0
    src = os.path.join(shared, "data", "benchmark", "Set5")
    for lr_scale, set_name in ((2, "Wrong"), (3, "Right")):
        shutil.copytree(os.path.join(src, "HR"), tmp_path / "data" / "benchmark" / set_name / "HR")
        lr_dir = tmp_path / "data" / "benchmark" / set_name / "LR_bicubic" / "X3"
        lr_dir.mkdir(parents=True)
        for name in SET5_LIKE:
            shutil.copy(os.path.join(src, "LR_bicubic_matlab", f"X{lr_scale}", f"{name}x{lr_scale}.png"),
                        lr_dir / f"{name}x3.png")
    capsys.readouterr()
    args = ["--model", "abpn", "--variant", "M4C28", "--scale", "3", "--pre_trained", ckpt,
            "--data_path", str(tmp_path / "data"), "--cache_dir", str(tmp_path / "c"),
            "--output_path", str(tmp_path / "o"), "--result_file", str(tmp_path / "r.json")]
    code, captured = _eval_main(args + ["--eval_datasets", "Wrong"], capsys)
    err = _error_lines(captured)
    assert code == 2 and len(err) == 1 and "babyx3.png is 256x256" in err[0] and "looks like x2 LR" in err[0]
    code, captured = _eval_main(args + ["--eval_datasets", "Right"], capsys)
    assert code == 0, captured.err
    assert json.loads((tmp_path / "r.json").read_text())["results"]["Right"]["psnr"] == pytest.approx(33.53, abs=0.01)


# ---------------------------------------------------------------- item 6: caches keyed on content

def test_eval_cache_follows_a_replaced_hr_image(tmp_path, ckpts):
    hr_dir = tmp_path / "data" / "benchmark" / "Tiny" / "HR"
    _save(hr_dir / "im.png", _smooth(48, 48, seed=1))

    def psnr(cache):
        args = _eval_args(ckpts[2], 2, tmp_path / "data", tmp_path, "Tiny", "--cache_dir", str(tmp_path / cache))
        return run_evaluation(get_config(args), log=lambda *_: None)["results"]["Tiny"]["psnr"]

    first = psnr("cache")
    _save(hr_dir / "im.png", _smooth(48, 48, seed=2))  # same name, same size, other content
    again = psnr("cache")
    fresh = psnr("fresh_cache")
    assert again == fresh and again != first
    # one entry per image: the stale one was removed
    entries = [f for _, _, fs in os.walk(tmp_path / "cache") for f in fs]
    assert entries == ["imx2.png"]


def test_train_cache_follows_a_replaced_hr_image_with_same_size_and_mtime(tmp_path):
    folder = tmp_path / "hr"
    path = folder / "im.bmp"  # BMP: the replacement has the same byte size
    _save(path, _smooth(64, 64, seed=1))
    stat = os.stat(path)
    first = TrainPairs(str(folder), 2, 8, cache_dir=str(tmp_path / "c")).pair(0)[0]
    new_hr = _smooth(64, 64, seed=2)
    _save(path, new_hr)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.stat(path).st_size == stat.st_size
    lr = TrainPairs(str(folder), 2, 8, cache_dir=str(tmp_path / "c")).pair(0)[0]
    np.testing.assert_array_equal(lr, imresize(new_hr, 0.5))
    assert not np.array_equal(lr, first)


# ---------------------------------------------------------------- item 11: too small for SSIM

def test_hr_too_small_for_ssim_is_named_and_other_sets_are_kept(tmp_path, ckpts, capsys):
    data = tmp_path / "data"
    _save(data / "benchmark" / "Good" / "HR" / "g.png", _smooth(48, 48))
    _save(data / "benchmark" / "Small" / "HR" / "a_ok.png", _smooth(48, 48, seed=3))
    _save(data / "benchmark" / "Small" / "HR" / "b_tiny.png", _smooth(12, 12, seed=4))  # x4, shave 4: 4x4 left
    code, captured = _eval_main(_eval_args(ckpts[4], 4, data, tmp_path, "Small,Good"), capsys)
    err = _error_lines(captured)
    assert code == 2 and len(err) == 1, captured.err
    tiny = str(data / "benchmark" / "Small" / "HR" / "b_tiny.png")
    assert f"{tiny} is too small for SSIM" in err[0] and "4x4 after shaving 4 px" in err[0]
    assert "11x11 SSIM window" in err[0] and "results of Good" in err[0]
    report = json.loads((tmp_path / "r_failed.json").read_text())
    assert list(report["results"]) == ["Good"] and 0 < report["results"]["Good"]["psnr"] < 100
    assert list(report["failed"]) == ["Small"]
    assert [i["name"] for i in report["failed"]["Small"]["per_image"]] == ["a_ok"]  # evaluated images kept
    assert report["failed"]["Small"]["failed_images"][0]["name"] == "b_tiny"
    # the kept numbers are those of a clean run
    clean = run_evaluation(get_config(_eval_args(ckpts[4], 4, data, tmp_path / "clean", "Good")), log=lambda *_: None)
    assert clean["results"]["Good"]["psnr"] == report["results"]["Good"]["psnr"]
