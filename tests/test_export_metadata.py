"""Exported files carry what tiling needs; every model exposes n_colors; unreadable exports get one line.

Issue 13, items 12, 13 and part of 19:
- an exported EDSR-baseline (receptive radius 36) tiles exactly like its checkpoint
  (the runners used to assume radius 16: hundreds of 8-bit pixels differ on the
  far-sighted EDSR built here); files without metadata still run, with a notice;
- every registered model, every form, exposes ``n_colors`` (and ``scale``) equal
  to the channels it really takes; SRPredictor runs an ``n_colors 1`` ABPN;
- a corrupt, truncated, empty or non-model ``.onnx`` / ``.mindir`` is refused
  with one line naming the file, exit 2 from infer.py.
"""
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
import mindspore as ms
from mindspore import Tensor

from conftest import ROOT, write_smooth_images
from src.engine.inference import SRPredictor
from src.runtime.runners import open_exported
from src.runtime.metadata import ExportedModelError, read_mindir_proto
from src.models.registry import create_model, has_training_form, list_models, list_variants, to_deploy
from src.weights.checkpoint import model_meta, save_checkpoint
OLD_ASSUMED_RADIUS = 16  # the tile overlap assumed for files without metadata before it was measured

RNG = np.random.default_rng(13)
TILE = 24  # LR tile side: small enough that the overlap (radius) decides the tiled output
FLOAT_TOLERANCE = 1e-4  # as export.py's check of a float file against MindSpore


def _u8(x):
    return np.clip(np.round(np.asarray(x, np.float64) * 255.0), 0, 255).astype(np.uint8)


def _far_sighted_edsr():
    """EDSR-baseline x2 with He-normal weights (random init leaves far pixels almost without effect),
    the output spread rescaled to ~0.15 around the mean so 8-bit pixels are not clipped."""
    net = create_model("edsr", "baseline", 2)
    rng = np.random.default_rng(0)
    for p in net.get_parameters():  # every parameter seeded: the test is the same on every run
        std = np.sqrt(2.0 / int(np.prod(p.shape[1:]))) if p.name.endswith("weight") else 0.01
        p.set_data(Tensor(rng.normal(0, std, p.shape).astype(np.float32)))
    lr = _lr_image()
    spread = SRPredictor(net, 2, -1).predict_float(lr).std()
    for p in (net.conv_last.weight, net.conv_last.bias):
        p.set_data(Tensor((p.asnumpy() * (0.15 / spread)).astype(np.float32)))
    return net


def _lr_image():
    import cv2  # pylint: disable=import-outside-toplevel
    noise = (np.random.default_rng(1).random((24, 80, 3)) * 255).astype(np.uint8)
    return cv2.GaussianBlur(noise, (5, 5), 2)  # 24 x 80: tiles of 24 across, context matters at 3 seams


def _export(ckpt, fmt, out, *extra, model=("edsr", "baseline", "2")):
    from model_utils.config import get_config  # pylint: disable=import-outside-toplevel
    from src.export.exporter import run_export  # pylint: disable=import-outside-toplevel
    config = get_config(["--model", model[0], "--variant", model[1], "--scale", model[2], "--pre_trained", ckpt,
                         "--file_format", fmt, "--input_shape", "1,3,24,40", "--output_path", out, *extra])
    lines = []
    report = run_export(config, log=lines.append)
    return report, lines


@pytest.fixture(scope="module")
def edsr(tmp_path_factory):
    """(checkpoint net, {'onnx': path, 'mindir': path}, export reports) for the far-sighted EDSR."""
    root = tmp_path_factory.mktemp("edsr_meta")
    net = _far_sighted_edsr()
    ckpt = str(root / "edsr_x2.ckpt")
    save_checkpoint(net, ckpt, meta=model_meta(net))
    files, reports = {}, {}
    for fmt in ("ONNX", "MINDIR"):
        reports[fmt.lower()], _ = _export(ckpt, fmt, str(root / "out"))
        files[fmt.lower()] = reports[fmt.lower()]["file"]
    return net, files, reports


EXPECTED_META = {"sr.model": "edsr", "sr.variant": "baseline", "sr.scale": "2", "sr.n_colors": "3",
                 "sr.receptive_radius": "36", "sr.peak_channels": str(64 * 2 * 2), "sr.kind": "float",
                 "sr.metadata_version": "1"}


def _stored_metadata(path):
    if path.endswith(".onnx"):
        return {p.key: p.value for p in onnx.load(path).metadata_props}
    return dict(read_mindir_proto(path).user_info)


@pytest.mark.parametrize("fmt", ["onnx", "mindir"])
def test_exported_edsr_records_tiling_metadata(edsr, fmt):
    _, files, reports = edsr
    stored = _stored_metadata(files[fmt])
    assert {k: stored.get(k) for k in EXPECTED_META} == EXPECTED_META
    assert stored["sr.input"].startswith("1 x 3 x H x W float32 in [0, 1], RGB")
    assert reports[fmt]["metadata"] == stored
    notices = []
    runner = open_exported(files[fmt], log=notices.append)
    assert notices == []
    assert (runner.scale, runner.n_colors, runner.receptive_radius, runner.peak_channels) == (2, 3, 36, 256)
    assert runner.metadata["model"] == "edsr" and runner.metadata["variant"] == "baseline"


def test_the_tile_check_is_sensitive_to_the_overlap(edsr):
    """With the old assumed overlap (16) the checkpoint's own tiled output differs: the check below can fail."""
    net = edsr[0]
    lr = _lr_image()
    whole = SRPredictor(net, 2, -1).predict_float(lr)
    short = SRPredictor(net, 2, TILE, OLD_ASSUMED_RADIUS).predict_float(lr)
    assert np.abs(short - whole).max() > 1e-3 and _differences_off_rounding_ties(short, whole) > 100
    exact = SRPredictor(net, 2, TILE).predict_float(lr)  # default overlap: the model's radius
    assert np.abs(exact - whole).max() < 1e-6 and (_u8(exact) != _u8(whole)).sum() == 0


@pytest.mark.parametrize("fmt", ["onnx", "mindir"])
def test_exported_edsr_tiles_exactly_like_its_checkpoint(edsr, fmt):
    net, files, _ = edsr
    lr = _lr_image()
    whole = SRPredictor(net, 2, -1).predict_float(lr)
    ckpt_tiled = SRPredictor(net, 2, TILE).predict_float(lr)
    runner = open_exported(files[fmt], log=lambda _: None)
    tiled = SRPredictor(runner, runner.scale, TILE).predict_float(lr)
    untiled = SRPredictor(runner, runner.scale, -1).predict_float(lr)
    assert tiled.shape == whole.shape == (1, 3, 48, 160)
    assert np.abs(tiled - untiled).max() < 1e-6 and (_u8(tiled) != _u8(untiled)).sum() == 0
    for ref in (whole, ckpt_tiled):
        assert np.abs(tiled - ref).max() < FLOAT_TOLERANCE
        assert _differences_off_rounding_ties(tiled, ref) == 0


def _differences_off_rounding_ties(out, ref, tol=FLOAT_TOLERANCE):
    """8-bit pixels where ``out`` and ``ref`` differ although ``ref`` is not within ``tol`` of a rounding
    boundary (onnxruntime and MindSpore sum in different orders, ~1e-7 apart; a value at x.5/255 may
    round either way, anything else is a real difference)."""
    scaled = np.asarray(ref, np.float64) * 255.0
    tie = np.abs(scaled - np.floor(scaled) - 0.5) < tol * 255.0
    return int(((_u8(out) != _u8(ref)) & ~tie).sum())


def test_quantized_exports_record_their_kind_and_tile_exactly(tmp_path):
    """A calibrated ABPN's fake-quant ONNX and int8 QDQ ONNX carry the same tiling metadata."""
    from src.quantlib.calibrate import calibrate  # pylint: disable=import-outside-toplevel
    from src.quantlib.quant_layers import QuantConfig  # pylint: disable=import-outside-toplevel
    q = create_model("abpn", "M2C8", 3)
    calibrate(q, [RNG.random((2, 3, 16, 16)).astype(np.float32) for _ in range(2)], "dbdc", QuantConfig(8, 8))
    ckpt = str(tmp_path / "w8a8.ckpt")
    save_checkpoint(q, ckpt, meta=dict(model_meta(q), quant_config=QuantConfig(8, 8).to_json(), quant_method="dbdc"))
    lr = _lr_image()
    for extra, kind in (((), "fake-quant"), (("--quant", "int8", "--file_name", str(tmp_path / "q8.onnx")), "int8 QDQ")):
        report, _ = _export(ckpt, "ONNX", str(tmp_path / "out"), *extra, model=("abpn", "M2C8", "3"))
        stored = _stored_metadata(report["file"])
        assert stored["sr.kind"] == kind and stored["sr.receptive_radius"] == "5" and stored["sr.scale"] == "3"
        runner = open_exported(report["file"], log=lambda _: None)
        assert (runner.receptive_radius, runner.scale, runner.n_colors) == (5, 3, 3)
        tiled, whole = (SRPredictor(runner, 3, t).predict_float(lr) for t in (8, -1))
        assert np.abs(tiled - whole).max() < 1e-6 and (_u8(tiled) != _u8(whole)).sum() == 0


def _strip_metadata(path, dst):
    """A copy of an exported file as written before metadata existed."""
    if path.endswith(".onnx"):
        model = onnx.load(path)
        del model.metadata_props[:]
        onnx.save(model, dst)
    else:
        proto = read_mindir_proto(path)
        proto.user_info.clear()
        with open(dst, "wb") as f:
            f.write(proto.SerializeToString())
    return dst


@pytest.mark.parametrize("fmt", ["onnx", "mindir"])
def test_file_without_metadata_runs_with_a_measured_radius_and_one_notice(edsr, fmt, tmp_path):
    """No metadata: the receptive radius is measured on the file and equals the one the network declares (36).
    (Random weights do not reproduce a test image, so the pixel range is given; tests/test_third_party_files.py
    proves it on trained weights.)"""
    net, files, _ = edsr
    old = _strip_metadata(files[fmt], str(tmp_path / f"old.{fmt}"))
    notices = []
    runner = open_exported(old, log=notices.append, pixel_range="1")
    assert len(notices) == 1 and "\n" not in notices[0]
    assert old in notices[0] and "no SR metadata (unknown model)" in notices[0]
    assert f"receptive radius {net.receptive_radius} LR pixels measured on the file" in notices[0]
    assert "pixels in 0..1 (--pixel_range" in notices[0]
    assert runner.metadata is None and runner.pixel_range == 1.0
    assert (runner.scale, runner.n_colors, runner.receptive_radius, runner.overlap) == (2, 3, 36, 36)
    lr = _lr_image()
    untiled = SRPredictor(runner, 2, -1).predict_float(lr)
    assert np.abs(untiled - SRPredictor(net, 2, -1).predict_float(lr)).max() < FLOAT_TOLERANCE


def _with_onnx_metadata(src, dst, **changes):
    model = onnx.load(src)
    props = {p.key: p.value for p in model.metadata_props}
    for key, value in changes.items():
        key = "sr." + key
        if value is None:
            props.pop(key, None)
        else:
            props[key] = value
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, dst)
    return dst


@pytest.mark.parametrize("changes,expected", [
    ({"receptive_radius": "abc"}, "bad sr.receptive_radius 'abc'"),
    ({"receptive_radius": "-1"}, "bad sr.receptive_radius '-1'"),
    ({"scale": "0"}, "bad sr.scale '0'"),
    ({"scale": "1"}, "bad sr.scale '1' in its metadata (expected 2..16)"),  # not an upscaler
    ({"receptive_radius": "0"}, "records a receptive radius of 0 LR pixels, but one input pixel changes its output"),
    ({"receptive_radius": "4096"}, "records a receptive radius of 4096 LR pixels, but one input pixel changes its "
                                   "output 36 pixels away"),
    ({"n_colors": "2"}, "bad sr.n_colors '2'"),
    ({"scale": None}, "without sr.scale"),
    ({"scale": "3"}, "not the (1, 3, 48, 48) its metadata (x3, 3 colour(s))"),   # graph upscales x2
    ({"n_colors": "1"}, "takes 3-channel images (NCHW) but its metadata records 1 colour(s)"),  # from its shapes
])
def test_metadata_that_disagrees_or_is_malformed_is_refused(edsr, tmp_path, changes, expected):
    path = _with_onnx_metadata(edsr[1]["onnx"], str(tmp_path / "bad.onnx"), **changes)
    with pytest.raises(ExportedModelError) as info:
        open_exported(path)
    message = str(info.value)
    assert expected in message and path in message and "re-export it with export.py" in message
    assert "\n" not in message


# ---- item 19 (part): unreadable exported files ----------------------------------------------------

def _bad_files(edsr_files, folder):
    """{case: path}: random bytes, a truncated real export, an empty file, a PNG and a real export of the
    other format, per extension."""
    import cv2  # pylint: disable=import-outside-toplevel
    png = str(folder / "image.png")
    cv2.imwrite(png, np.zeros((8, 8, 3), np.uint8))
    with open(png, "rb") as f:
        png_bytes = f.read()
    cases = {}
    for ext in ("onnx", "mindir"):
        with open(edsr_files[ext], "rb") as f:
            real = f.read()
        with open(edsr_files["mindir" if ext == "onnx" else "onnx"], "rb") as f:
            other = f.read()
        contents = {"random": RNG.integers(0, 256, 4096, dtype=np.uint8).tobytes(), "truncated": real[:len(real) // 2],
                    "empty": b"", "png": png_bytes, "other": other}
        for name, data in contents.items():
            path = str(folder / f"{name}.{ext}")
            with open(path, "wb") as f:
                f.write(data)
            cases[f"{name}.{ext}"] = path
    return cases


def test_unreadable_exported_files_are_refused_with_one_line(edsr, tmp_path):
    cases = _bad_files(edsr[1], tmp_path)
    assert len(cases) == 10
    for case, path in cases.items():
        fmt = "ONNX" if case.endswith(".onnx") else "MindIR"
        with pytest.raises(ExportedModelError) as info:
            open_exported(path)
        message = str(info.value)
        assert message.startswith(f"{path} is not a readable {fmt} model ("), (case, message)
        assert message.endswith("; re-export it with export.py") and "\n" not in message, (case, message)


def _infer(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "infer.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)


def _error_lines(stderr):
    """stderr lines that are not MindSpore's own log lines ('[WARNING] ME(...)')."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("[WARNING]")]


@pytest.mark.parametrize("case", ["random.onnx", "truncated.mindir", "png.mindir", "other.mindir"])
def test_infer_cli_unreadable_model_exits_2_with_one_line(edsr, tmp_path, case):
    path = _bad_files(edsr[1], tmp_path)[case]
    write_smooth_images(tmp_path / "photos", 1, 16)
    proc = _infer("--pre_trained", path, "--input_path", str(tmp_path / "photos"),
                  "--output_path", str(tmp_path / "out"))
    fmt = "ONNX" if case.endswith(".onnx") else "MindIR"
    assert proc.returncode == 2, proc.stderr
    lines = _error_lines(proc.stderr)
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"error: {path} is not a readable {fmt} model (")
    assert lines[0].endswith("; re-export it with export.py")
    assert not os.path.exists(tmp_path / "out") or not os.listdir(tmp_path / "out")


# ---- item 13: every model exposes n_colors and scale ----------------------------------------------

RGB_ONLY = {"edsr"}  # mean shift over the DIV2K RGB mean


def _forms(model, n_colors):
    """(description, options, form) for every form a family builds."""
    out = [("deploy", {}, "deploy")]
    if model == "sesr":
        out = [(f"deploy {t}", {"linear_block_type": t}, "deploy") for t in ("collapsed", "collapsed_adder")]
        out += [(f"train {t}", {"linear_block_type": t, "feature_size": 32}, "train")
                for t in ("expanded", "collapsed", "collapsed_adder")]
    elif has_training_form(model):
        out.append(("train", {}, "train"))
    return [(d, dict(o, n_colors=n_colors), f) for d, o, f in out]


@pytest.mark.parametrize("n_colors", [1, 3])
@pytest.mark.parametrize("model", list_models())
def test_every_model_exposes_the_channels_it_takes(model, n_colors):
    """Every registered family x variant x form: ``n_colors`` and ``scale`` equal what a forward pass takes
    and gives (PyNative: one compile per network would take minutes)."""
    if model in RGB_ONLY and n_colors != 3:
        with pytest.raises(ValueError, match="n_colors"):
            create_model(model, None, 2, n_colors=n_colors)
        return
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        checked = 0
        for variant in list_variants(model):
            for scale in (2, 3):
                for described, options, form in _forms(model, n_colors):
                    net = create_model(model, variant, scale, form=form, **options)
                    nets = [net] + ([to_deploy(net)] if form == "train" else [])
                    for each in nets:
                        each.set_train(False)
                        what = f"{model}-{variant} x{scale} {described} ({type(each).__name__})"
                        assert getattr(each, "n_colors", None) == n_colors, what
                        assert getattr(each, "scale", None) == scale, what
                        x = Tensor(RNG.random((1, n_colors, 6, 5)).astype(np.float32))
                        assert each(x).shape == (1, n_colors, 6 * scale, 5 * scale), what
                        checked += 1
        assert checked >= len(list_variants(model)) * 2
    finally:
        ms.set_context(mode=ms.GRAPH_MODE)


def test_predictor_runs_an_n_colors_1_abpn():
    net = create_model("abpn", "M2C8", 3, n_colors=1)
    lr = (np.random.default_rng(2).random((10, 13, 3)) * 255).astype(np.uint8)
    predictor = SRPredictor(net, 3, -1)
    assert predictor.n_colors == 1
    sr = predictor.predict(lr)
    assert sr.shape == (30, 39, 3) and sr.dtype == np.uint8
    y = RNG.random((1, 1, 10, 13)).astype(np.float32)
    np.testing.assert_allclose(predictor.forward(y), net(Tensor(y)).asnumpy(), atol=1e-6)
    tiled = SRPredictor(net, 3, 4)  # overlap = ABPN's radius: tiles equal the whole image
    np.testing.assert_array_equal(tiled.predict(lr), sr)
