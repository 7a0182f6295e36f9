"""The crop figure (scripts/sr_crops.py, src/engine/crop_figure.py): crop PSNR as the evaluator measures
it, the grid's layout, how a crop is picked, option checks and the command line."""
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from mindspore import Tensor

from conftest import ROOT, write_quant_run
from src.data.eval_sets import resolve_eval_set
from src.data.image_io import read_rgb, write_png
from src.engine import crop_figure
from src.engine.crop_figure import (GAP, STRIP, compose_grid, crop_psnr, grid_size, parse_crop_options, pick_box,
                                    scored_region, window_sums, zoom_crop)
from src.engine.evaluator import evaluate_set
from src.metrics import calculate_psnr
from src.models import create_model

KNOWN = ["minmax", "percentile", "omse", "dbdc", "dbdc_pac"]


class _Fixed:
    """A predictor that returns a fixed SR image whatever the LR."""

    def __init__(self, sr):
        self.sr = sr

    def predict(self, _lr):
        return self.sr


def _pair(h=48, w=60, seed=0):
    rng = np.random.default_rng(seed)
    hr = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    sr = np.clip(hr.astype(int) + rng.integers(-20, 21, hr.shape), 0, 255).astype(np.uint8)
    return sr, hr


def _evaluated(tmp_path, name, sr, hr, shave):
    """The evaluator's PSNR (evaluate_set, Y channel) of ``sr`` against ``hr`` saved as a one-image set."""
    write_png(str(tmp_path / "benchmark" / name / "HR" / "a.png"), hr)
    protocol = SimpleNamespace(scale=3, gt_mod=12, metric_channel="y", shave=shave, cache_dir=str(tmp_path / "c"))
    return evaluate_set(_Fixed(sr), resolve_eval_set(str(tmp_path), name, 3), protocol)["psnr"]


def test_crop_psnr_is_the_evaluators_psnr_of_the_region(tmp_path):
    sr, hr = _pair()
    whole, region = crop_psnr(sr, hr, (0, 0, 60, 48), 3)
    assert region == (3, 3, 57, 45) and whole == _evaluated(tmp_path, "Whole", sr, hr, -1)  # shave = scale
    box = (12, 12, 36, 24)  # inside the scored area: the crop scored as an image of its own, nothing shaved
    inner, region = crop_psnr(sr, hr, box, 3)
    assert region == (12, 12, 48, 36)
    assert inner == _evaluated(tmp_path, "Crop", sr[12:36, 12:48], hr[12:36, 12:48], 0)
    edge, region = crop_psnr(sr, hr, (50, 0, 10, 20), 3)  # reaches the right and top borders: those are shaved
    assert region == (50, 3, 57, 20) and edge == calculate_psnr(sr[3:20, 50:57], hr[3:20, 50:57], 0, "y")
    rgb, _ = crop_psnr(sr, hr, box, 3, "rgb")
    assert rgb == calculate_psnr(sr[12:36, 12:48], hr[12:36, 12:48], 0, "rgb") != inner


def test_a_box_outside_the_image_or_inside_the_border_is_refused():
    with pytest.raises(ValueError, match="leaves the 60x48 HR image"):
        scored_region((40, 0, 24, 8), (48, 60, 3), 3)
    with pytest.raises(ValueError, match="lies in the 3-pixel border"):
        scored_region((0, 0, 3, 40), (48, 60, 3), 3)


def test_the_grid_is_rows_by_columns_of_zoomed_crops_with_their_labels():
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (30, 40, 3)).astype(np.uint8) for _ in range(6)]
    box, zoom = (5, 7, 12, 10), 4
    crop = zoom_crop(images[0], box, zoom)
    assert crop.shape == (40, 48, 3) and np.array_equal(crop[::zoom, ::zoom], images[0][7:17, 5:17])
    cells = [[(zoom_crop(images[3 * r + c], box, zoom), f"col {c}", "1.00 dB") for c in range(3)] for r in range(2)]
    grid = compose_grid(cells)
    assert grid.shape == (2 * (40 + STRIP) + GAP, 3 * 48 + 2 * GAP, 3) == grid_size(2, 3, 40, 48) + (3,)
    for r in range(2):
        for c in range(3):
            top, left = r * (40 + STRIP + GAP), c * (48 + GAP)
            assert np.array_equal(grid[top:top + 40, left:left + 48], cells[r][c][0])
            strip = grid[top + 40:top + 40 + STRIP, left:left + 48]
            assert strip.min() < 128  # the label is drawn


def test_window_sums_and_the_picked_crop():
    values = np.arange(30.0).reshape(5, 6)
    sums = window_sums(values, 2)
    assert sums.shape == (4, 5) and sums[1, 2] == values[1:3, 2:4].sum()
    hr = np.full((60, 60, 3), 128, np.uint8)
    a, b = hr.copy(), hr.copy()
    b[30:40, 20:30] = 0  # the outputs differ there
    assert pick_box(hr, [a, b], 10, 3) == (20, 30, 10, 10)
    textured = hr.copy()
    textured[10:20, 40:50] = np.random.default_rng(2).integers(0, 256, (10, 10, 3))
    assert pick_box(textured, [a, a], 10, 3, "detail") == (40, 10, 10, 10)
    b[0:10, 0:10] = 255  # a larger difference in the shaved border is not picked
    assert pick_box(hr, [a, b], 10, 3) == (20, 30, 10, 10)
    with pytest.raises(ValueError, match="--crop_size 60 does not fit"):
        pick_box(hr, [a, b], 60, 3)


def test_options_and_their_errors():
    opts = parse_crop_options({"methods": "dbdc,dbdc_pac", "box": "1,2,30,30", "images": "Set14/comic,S/x"}, KNOWN)
    assert opts.methods == ("dbdc", "dbdc_pac") and opts.boxes == ((1, 2, 30, 30),) * 2
    assert opts.images == (("Set14", "comic"), ("S", "x")) and opts.select == "spread" and opts.zoom == 3
    assert parse_crop_options({}, KNOWN + ["dbdc_recon"]).methods == ("dbdc", "dbdc_pac", "dbdc_recon")
    assert parse_crop_options({"quant_ckpts": "a.ckpt"}, KNOWN).methods == ()
    bad = [({"methods": "kmeans"}, "--methods kmeans: not a quantization method; choose from minmax"),
           ({}, "--methods dbdc_recon: not a quantization method"),
           ({"methods": ""}, "nothing to compare"),
           ({"methods": "dbdc,dbdc"}, "lists a method twice"),
           ({"methods": "dbdc", "labels": "a,b"}, "--labels gives 2 labels for 1 quantized columns"),
           ({"methods": "dbdc,minmax", "labels": "a,a"}, "--labels a,a gives a label twice"),
           ({"methods": "dbdc", "box": "1,2,3"}, "--box '1,2,3': give x,y,w,h"),
           ({"methods": "dbdc", "box": "1,2,3,0"}, "--box '1,2,3,0': give x,y,w,h"),
           ({"methods": "dbdc", "box": "0,0,8,8;0,0,9,9", "images": "A/a,A/b"}, "the boxes differ in size"),
           ({"methods": "dbdc", "box": "0,0,8,8;0,0,8,8"}, "gives 2 boxes for 4 images"),
           ({"methods": "dbdc", "images": "comic"}, "--images 'comic': give <set>/<image name>"),
           ({"methods": "dbdc", "zoom": "0"}, "--zoom 0 is out of range"),
           ({"methods": "dbdc", "crop_size": "big"}, "--crop_size 'big' is not an integer"),
           ({"methods": "dbdc", "select": "best"}, "--select 'best' is not one of spread, detail"),
           ({"methods": "dbdc", "figure": "a.jpg"}, "--figure a.jpg: the figure is a PNG")]
    for raw, message in bad:
        with pytest.raises(ValueError, match=None) as info:
            parse_crop_options(raw, KNOWN)
        assert message in str(info.value), (raw, str(info.value))


def test_the_script_flags_are_declared_once_and_split_from_eval_options(capsys):
    from src.engine.script_flags import CROP_FLAGS, split_flags  # pylint: disable=import-outside-toplevel
    assert crop_figure.FLAGS == tuple(CROP_FLAGS)
    raw, rest = split_flags(["--model", "etds", "--box=1,2,3,4", "--methods", "dbdc", "--scale", "3"], CROP_FLAGS, "s")
    assert raw == {"box": "1,2,3,4", "methods": "dbdc"} and rest == ["--model", "etds", "--scale", "3"]
    _, rest = split_flags(["--meth", "x"], CROP_FLAGS, "s")  # no abbreviations: eval.py options pass through whole
    assert rest == ["--meth", "x"]
    raw, _ = split_flags(["--labels", "-a,b", "--scale", "3"], CROP_FLAGS, "s")  # one dash: the flag's value
    assert raw == {"labels": "-a,b"}
    with pytest.raises(SystemExit) as info:
        split_flags(["--zoom", "--scale", "3"], CROP_FLAGS, "s")
    assert info.value.code == 2 and capsys.readouterr().err == "error: --zoom needs a value\n"


@pytest.fixture(scope="module")
def cli_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("crops")
    net = create_model("etds", "M2C8", 3)
    rng = np.random.default_rng(3)
    for _, p in net.parameters_and_names():
        p.set_data(Tensor(rng.standard_normal(p.shape).astype(np.float32) * 0.2))
    return root, write_quant_run(root, net)


def _run(root, ckpt, *extra):
    args = ["--model", "etds", "--variant", "M2C8", "--scale", "3", "--pre_trained", ckpt,
            "--data_path", str(root / "data"), "--images", "Q/0,Q/1", "--calib_path", str(root / "calib"),
            "--calib_num", "4", "--pac_hr_patch", "36", "--cache_dir", str(root / "cache"), "--crop_size", "24",
            "--zoom", "2", *extra]
    return subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "sr_crops.py"), *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=600)


def test_cli_writes_the_figure_and_reuses_calibrated_checkpoints(cli_setup, tmp_path):
    root, ckpt = cli_setup
    first = _run(root, ckpt, "--methods", "dbdc,minmax", "--figure", str(tmp_path / "a.png"),
                 "--save_quant_dir", str(tmp_path / "q"))
    assert first.returncode == 0, first.stderr
    report = json.loads((tmp_path / "a.json").read_text())
    assert [c["label"] for c in report["columns"]] == ["bicubic", "float", "DBDC", "MinMax"]
    assert read_rgb(str(tmp_path / "a.png")).shape == grid_size(2, 5, 48, 48) + (3,)  # HR + 4 columns, 24 px x 2
    for record in report["images"]:
        x, y, w, h = record["box"]
        assert (w, h) == (24, 24) and 3 <= x <= 48 - 3 - 24 and 3 <= y <= 48 - 3 - 24
    saved = [str(tmp_path / "q" / f"etds_M2C8_x3_w8a8_{m}.ckpt") for m in ("dbdc", "minmax")]
    box = ",".join(map(str, report["images"][0]["box"]))
    second = _run(root, ckpt, "--quant_ckpts", ",".join(saved), "--labels", "mine,theirs", "--box", box,
                  "--figure", str(tmp_path / "b.png"))
    assert second.returncode == 0, second.stderr
    again = json.loads((tmp_path / "b.json").read_text())
    assert [c["label"] for c in again["columns"]] == ["bicubic", "float", "mine", "theirs"]
    assert again["columns"][2]["method"] == "dbdc" and again["columns"][3]["from_checkpoint"] is True
    before, after = report["images"][0]["crop_psnr"], again["images"][0]["crop_psnr"]
    assert (after["mine"], after["theirs"], after["float"]) == (before["DBDC"], before["MinMax"], before["float"])


@pytest.mark.parametrize("extra,expected", [
    (["--methods", "kmeans"], "--methods kmeans: not a quantization method"),
    (["--methods", "dbdc", "--box", "40,0,24,24"], "--box 40,0,24,24 leaves the 48x48 HR image"),
    (["--methods", "dbdc", "--box", "1,1"], "--box '1,1': give x,y,w,h"),
    (["--methods", "dbdc", "--images", "Q/nope"], "--images Q/nope: no image 'nope'"),
    (["--methods", "dbdc", "--crop_size", "48"], "--crop_size 48 does not fit Q/0"),
    (["--quant_ckpts", "missing.ckpt"], "missing.ckpt"),
    (["--methods"], "--methods needs a value"),
])
def test_bad_input_is_one_line_and_exit_2(cli_setup, tmp_path, extra, expected):
    root, ckpt = cli_setup
    proc = _run(root, ckpt, "--figure", str(tmp_path / "x.png"), *extra)
    assert proc.returncode == 2
    lines = [l for l in proc.stderr.splitlines() if l.strip() and "WARNING" not in l and not l.startswith(" ")]
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert not os.path.exists(tmp_path / "x.png")
