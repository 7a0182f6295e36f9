import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import ROOT
from model_utils.config import get_config
from src.engine.evaluate import run_evaluation
from src.models import create_model
from src.weights.checkpoint import model_meta, save_checkpoint


def run_eval(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "eval.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaldata")
    rng = np.random.default_rng(0)
    for name, sizes in (("SetA", [(50, 62), (36, 48)]), ("SetB", [(40, 40)])):
        folder = root / "data" / "benchmark" / name / "HR"
        folder.mkdir(parents=True)
        for i, (h, w) in enumerate(sizes):
            base = cv2.resize(rng.integers(0, 256, (h // 4, w // 4, 3)).astype(np.uint8), (w, h))
            cv2.imwrite(str(folder / f"img{i}.png"), base)
    net = create_model("abpn", "M2C8", 2)
    ckpt = str(root / "abpn_x2.ckpt")
    save_checkpoint(net, ckpt, meta=model_meta(net))
    return root, ckpt


def _common(root, ckpt, *extra):
    return ["--model", "abpn", "--variant", "M2C8", "--scale", "2", "--pre_trained", ckpt,
            "--data_path", str(root / "data"), "--cache_dir", str(root / "cache"),
            "--output_path", str(root / "out"), *extra]


def test_eval_writes_report_and_images(tiny_setup):
    root, ckpt = tiny_setup
    result_file = root / "r.json"
    proc = run_eval(*_common(root, ckpt, "--eval_datasets", "SetA,SetB", "--save_sr", "True",
                             "--result_file", str(result_file)))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(result_file.read_text())
    assert set(report["results"]) == {"SetA", "SetB"}
    assert report["results"]["SetA"]["images"] == 2 and report["scale"] == 2 and report["model"] == "abpn"
    for r in report["results"].values():
        assert 0 < r["psnr"] < 100 and 0 < r["ssim"] <= 1
    assert "SetA" in proc.stdout and f"{report['results']['SetA']['psnr']:.2f}" in proc.stdout
    sr = cv2.imread(str(root / "out" / "sr_abpn_M2C8_x2" / "SetA" / "img0.png"))
    assert sr.shape == (48, 60, 3)  # HR 50x62 cropped to multiples of 12
    # same numbers in-process, and self-ensemble changes them
    cfg = get_config(_common(root, ckpt, "--eval_datasets", "SetA", "--result_file", str(root / "r2.json")))
    again = run_evaluation(cfg, log=lambda *_: None)
    assert again["results"]["SetA"]["psnr"] == pytest.approx(report["results"]["SetA"]["psnr"], abs=1e-9)
    cfg_ens = cfg.replace(self_ensemble=True)
    ens = run_evaluation(cfg_ens, log=lambda *_: None)
    assert ens["results"]["SetA"]["psnr"] != again["results"]["SetA"]["psnr"]


@pytest.mark.parametrize("extra,expected", [
    (["--eval_datasets", "Set5"], "dataset Set5 not found: "),
    (["--scale", "3"], "which holds abpn-M2C8 x2 (scale 2); drop --scale"),
    (["--variant", "M4C8"], "--variant M4C8 contradicts"),
    (["--metric_channel", "lab"], "is not one of ['y', 'rgb']"),
    (["--no_such_key", "1"], "valid keys:"),
])
def test_bad_inputs_give_one_line_error(tiny_setup, extra, expected):
    root, ckpt = tiny_setup
    args = _common(root, ckpt, "--eval_datasets", "SetA")
    for i in range(0, len(extra), 2):  # later flags override earlier ones
        args += extra[i:i + 2]
    proc = run_eval(*args)
    assert proc.returncode == 2
    lines = [l for l in proc.stderr.splitlines() if l.strip() and "WARNING" not in l and "usage:" not in l
             and not l.startswith(" ")]
    assert len(lines) == 1 and expected in lines[0], proc.stderr


def test_missing_checkpoint_error(tiny_setup):
    root, _ = tiny_setup
    proc = run_eval(*_common(root, str(root / "nothing.ckpt"), "--eval_datasets", "SetA"))
    assert proc.returncode == 2 and "checkpoint not found" in proc.stderr


def test_quick_start_defaults_use_shipped_checkpoint_and_sample_set(tmp_path):
    """README quick start: the shipped defaults with no data present evaluate the built-in sample set."""
    cfg = get_config([])
    assert os.path.isfile(os.path.join(ROOT, cfg.pretrained_dir, f"{cfg.model}_{cfg.variant}_x2.ckpt"))
    if os.path.isdir(os.path.join(ROOT, "data", "DIV2K_valid_HR")):
        pytest.skip("a real DIV2K is present in ./data, so the sample fallback does not apply")
    result = tmp_path / "q.json"
    proc = run_eval("--config_path", "DIV2K_config.yaml", "--scale", "2", "--cache_dir", str(tmp_path / "c"),
                    "--result_file", str(result), "--output_path", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("DIV2K not found") and "built-in sample set" in first
    report = json.loads(result.read_text())
    assert list(report["results"]) == ["Samples"] and "sample set" in report["data_note"]
    # the shipped model must clearly beat bicubic upscaling of the same LR images
    from src.data.eval_sets import load_pair, sample_set
    from src.data.imresize import imresize
    from src.metrics import calculate_psnr
    samples = sample_set()
    bicubic = []
    for image in samples.images:
        lr, hr = load_pair(samples, image, 2, gt_mod=12)
        up = np.clip(np.floor(imresize(lr.astype(np.float64), 2.0) + 0.5), 0, 255).astype(np.uint8)
        bicubic.append(calculate_psnr(up, hr, shave=2))
    assert report["results"]["Samples"]["psnr"] > np.mean(bicubic) + 1.0
