"""eval.py and infer.py run the exported files that go to a phone: .onnx, .ort, .mindir, .tflite (issue 14, item 4).

- TFLite metadata: the sr.* map survives attach/read in a ``sr_metadata`` flatbuffer buffer and
  does not change what the interpreter computes;
- layout comes from the file's shapes (NCHW for ONNX, NHWC for TFLite), never from the extension;
- fixed-shape files run in windows of their input size: equal to the untiled run where the image
  fills the windows (any size at least the window), close where a small image is padded;
- .ort files give the .onnx file's output; TFLite float32 and int8 with uint8 pixel IO run with
  their quantization parameters;
- eval.py --pre_trained FILE gives the checkpoint's PSNR (RGB ABPN and Y-only SESR), records the
  kind; infer.py --file_name writes images from .tflite and .ort;
- bad inputs: missing runtime, corrupt files, quantization options or a wrong --scale with a
  file: one line each.

The files are made here: ONNX by MindSpore's exporter (fixed shape), .ort by onnxruntime's
converter, .tflite by TensorFlow's converter (skipped without requirements-mobile.txt).
"""
import json
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import onnx
import pytest
from mindspore import Tensor

from conftest import ROOT
from model_utils.config import get_config
from src.engine.evaluate import run_evaluation
from src.runtime.file_layout import describe_io
from src.runtime.fixed_tiles import window_plan
from src.engine.inference import SRPredictor
from src.runtime.runners import open_exported
from src.runtime.metadata import ExportedModelError, MissingRuntimeError, export_metadata
from src.export.onnx.onnx_float import float_onnx, save_onnx, traced_onnx
from src.models.registry import create_model
from src.weights.checkpoint import model_meta, save_checkpoint
from src.weights.loader import load_for_inference

EXACT = 1e-5        # float32 max abs difference: same arithmetic, different tiling / runtime
EXACT_DB = 1e-3     # PSNR difference (dB) of files run in windows that the images fill
TILE = (16, 24)     # fixed LR input of the test files (the mobile default 360x640 is too slow here)
SHIPPED_SESR = os.path.join(ROOT, "pretrained", "sesr_M5_x2.ckpt")
RNG = np.random.default_rng(14)


def _smooth(h, w, c=3, seed=0):
    noise = np.random.default_rng(seed).random((h, w, c)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(noise, (5, 5), 2).reshape(h, w, c) * 1.6 - 0.3, 0, 1)


def _nchw(img):
    return np.ascontiguousarray(img.transpose(2, 0, 1)[None], np.float32)


def _run_cli(script, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)


def _convert_to_ort(onnx_path, out_dir):
    proc = subprocess.run([sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort", onnx_path,
                           "--output_dir", out_dir, "--optimization_style", "Fixed"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return os.path.join(out_dir, os.path.splitext(os.path.basename(onnx_path))[0] + ".ort")


# ---- ONNX / ORT files of a MindSpore model ---------------------------------------------------------------

@pytest.fixture(scope="module")
def abpn(tmp_path_factory):
    """ABPN-M2C8 x3 (random weights): checkpoint, fixed 1x3x16x24 ONNX + .ort, dynamic ONNX, all with metadata."""
    root = tmp_path_factory.mktemp("abpn_files")
    net = create_model("abpn", "M2C8", 3)
    rng = np.random.default_rng(3)
    for p in net.get_parameters():  # seeded (MindSpore's init is not): the same numbers on every run
        std = 0.5 * np.sqrt(2.0 / int(np.prod(p.shape[1:]))) if p.name.endswith("weight") else 0.01
        p.set_data(Tensor(rng.normal(0, std, p.shape).astype(np.float32)))
    net.set_train(False)
    ckpt = str(root / "abpn_x3.ckpt")
    save_checkpoint(net, ckpt, meta=model_meta(net))
    meta = export_metadata(net)
    fixed = save_onnx(traced_onnx(net, np.zeros((1, 3) + TILE, np.float32)), str(root / "abpn_fixed.onnx"), meta)
    again, _ = load_for_inference("abpn", "M2C8", 3, ckpt, {})  # MindSpore exports a Cell once
    dynamic = save_onnx(float_onnx(again, np.zeros((1, 3) + TILE, np.float32)), str(root / "abpn_dyn.onnx"), meta)
    ort = _convert_to_ort(fixed, str(root / "ort"))
    return {"net": net, "ckpt": ckpt, "fixed": fixed, "dynamic": dynamic, "ort": ort, "root": root}


def test_onnx_layout_and_fixed_size_come_from_the_file(abpn):
    fixed, dynamic = open_exported(abpn["fixed"]), open_exported(abpn["dynamic"])
    assert (fixed.io.layout, fixed.io.tile_hw, fixed.io.scale, fixed.io.channels) == ("NCHW", TILE, 3, 3)
    assert (dynamic.io.layout, dynamic.io.tile_hw) == ("NCHW", None)
    assert fixed.overlap == fixed.receptive_radius == abpn["net"].receptive_radius
    assert fixed.kind == "float ONNX (file)" and fixed.notice is None


@pytest.mark.parametrize("size", [TILE, (40, 61), (16, 100), (53, 24)])
def test_fixed_windows_equal_the_untiled_run_where_the_image_fills_them(abpn, size):
    x = _nchw(_smooth(*size, seed=sum(size)))
    whole = open_exported(abpn["dynamic"]).run(x)
    tiled = open_exported(abpn["fixed"]).run(x)
    assert tiled.shape == whole.shape == (1, 3, size[0] * 3, size[1] * 3)
    assert np.abs(tiled - whole).max() < EXACT


def test_a_small_image_is_padded_and_differs_only_near_the_padded_border(abpn):
    x = _nchw(_smooth(10, 30, seed=3))  # 10 rows < 16: padded at the bottom
    runner = open_exported(abpn["fixed"])
    whole, tiled = open_exported(abpn["dynamic"]).run(x), runner.run(x)
    band = runner.receptive_radius * 3  # HR rows a padded row can reach
    assert np.abs(tiled - whole)[:, :, :30 - band].max() < EXACT
    diff = np.abs(tiled - whole)
    assert diff.max() > EXACT  # the padding does change the border (else the test shows nothing)
    assert diff.mean() < 0.01 and diff.max() < 0.1  # measured: mean 0.004, max 0.05


def test_ort_file_gives_the_onnx_output_and_keeps_metadata(abpn):
    onnx_runner, ort_runner = open_exported(abpn["fixed"]), open_exported(abpn["ort"])
    assert ort_runner.metadata == onnx_runner.metadata and ort_runner.kind == "float ORT (file)"
    assert ort_runner.io == onnx_runner.io
    x = _nchw(_smooth(30, 40, seed=5))
    assert np.abs(ort_runner.run(x) - onnx_runner.run(x)).max() < EXACT


def test_fixed_shape_mindir_runs_in_windows_of_its_declared_size(abpn, tmp_path):
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    from src.runtime.metadata import mindir_user_info  # pylint: disable=import-outside-toplevel
    net, _ = load_for_inference("abpn", "M2C8", 3, abpn["ckpt"], {})
    net.set_train(False)
    stem = str(tmp_path / "abpn_fixed")
    ms.export(net, Tensor(np.zeros((1, 3) + TILE, np.float32)), file_name=stem, file_format="MINDIR",
              custom_func=mindir_user_info(export_metadata(net)))
    runner = open_exported(stem + ".mindir")
    assert (runner.io.layout, runner.io.tile_hw, runner.kind) == ("NCHW", TILE, "float MindIR (file)")
    x = _nchw(_smooth(40, 61, seed=6))
    assert np.abs(runner.run(x) - open_exported(abpn["dynamic"]).run(x)).max() < EXACT


@pytest.mark.parametrize("in_shape,out_shape,expected", [
    ([1, 3, 360, 640], [1, 3, 1080, 1920], ("NCHW", 3, (360, 640), 3)),
    ([1, 360, 640, 3], [1, 1080, 1920, 3], ("NHWC", 3, (360, 640), 3)),
    ([1, 1, 360, 640], [1, 1, 720, 1280], ("NCHW", 1, (360, 640), 2)),
    ([1, 3, "height", "width"], [1, 3, "out_height", "out_width"], ("NCHW", 3, None, None)),
    ([1, -1, -1, 3], [1, -1, -1, 3], ("NHWC", 3, None, None)),
    ([1, 3, 3, 3], [1, 3, 9, 9], ("NCHW", 3, (3, 3), 3)),  # only NCHW scales both spatial axes alike
])
def test_describe_io_reads_layout_from_shapes(in_shape, out_shape, expected):
    io = describe_io("f", in_shape, out_shape, "NHWC" if expected[0] == "NCHW" else "NCHW")
    assert (io.layout, io.channels, io.tile_hw, io.scale) == expected


@pytest.mark.parametrize("in_shape,out_shape,message", [
    ([1, 360, 640, 4], [1, 1080, 1920, 4], "neither 1xCxHxW (NCHW) nor 1xHxWxC"),
    ([2, 3, 16, 16], [2, 3, 32, 32], "batch of 2"),
    ([1, 3, 16], [1, 3, 32], "not the 4-D image tensors"),
    ([1, 3, 16, 16], [1, 3, 32, 48], "neither"),
])
def test_describe_io_refuses_what_is_no_sr_graph(in_shape, out_shape, message):
    with pytest.raises(ExportedModelError, match=re.escape(message)):
        describe_io("f.tflite", in_shape, out_shape, "NHWC")


@pytest.mark.parametrize("size,tile,overlap", [(100, 24, 4), (24, 24, 4), (10, 24, 4), (25, 24, 4), (640, 360, 36),
                                               (50, 9, 4), (31, 8, 5)])
def test_window_plan_covers_the_axis_once_with_context(size, tile, overlap):
    plan = window_plan(size, tile, overlap)
    assert plan[0][1] == 0 and plan[-1][2] == size
    assert all(a[2] == b[1] for a, b in zip(plan, plan[1:]))  # no gap, no overlap
    for start, lo, hi in plan:
        assert lo < hi and start <= lo and hi <= start + tile
        if size >= tile:
            assert 0 <= start <= size - tile  # windows never hang over the image
        if tile > 2 * overlap:
            assert lo == 0 or lo - start >= overlap
            assert hi == size or start + tile - hi >= overlap


# ---- TFLite files (TensorFlow's converter) -----------------------------------------------------------------

S, F = 2, 8  # the TF test model: x2, 8 features, two 3x3 convs -> receptive radius 2, nearest anchor


def _tf_weights(channels):
    rng = np.random.default_rng(7)
    return (rng.normal(0, 0.3, (3, 3, channels, F)).astype(np.float32), rng.normal(0, 0.05, F).astype(np.float32),
            rng.normal(0, 0.05, (3, 3, F, channels * S * S)).astype(np.float32))


def _tf_body(tf, channels):
    w1, b1, w2 = _tf_weights(channels)

    def body(x):  # NHWC float in [0, 1]
        y = tf.nn.relu(tf.nn.conv2d(x, w1, 1, "SAME") + b1)
        y = tf.nn.conv2d(y, w2, 1, "SAME") + tf.concat([x] * (S * S), -1)
        return tf.clip_by_value(tf.nn.depth_to_space(y, S), 0.0, 1.0)
    return body


def _tf_convert(tf, body, shape, int8=False):
    fn = tf.function(body, input_signature=[tf.TensorSpec(shape, tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    if int8:
        def representative():
            for i in range(8):
                x = np.random.default_rng(i).random([1, *TILE, shape[-1]]).astype(np.float32)
                x.flat[0], x.flat[1] = 0.0, 1.0  # the input range is exactly [0, 1]: uint8 scale 1/255
                yield [x]
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.uint8
    return converter.convert()


def _tf_meta(channels, kind):
    return {"sr.metadata_version": "1", "sr.model": "tfnet", "sr.variant": "F8", "sr.scale": str(S),
            "sr.n_colors": str(channels), "sr.receptive_radius": "2", "sr.peak_channels": str(F), "sr.kind": kind}


@pytest.fixture(scope="module")
def tflite(tmp_path_factory):
    """{name: path} of TF-converted files (fixed 1x16x24xC unless named dyn) and the TF reference function."""
    tf = pytest.importorskip("tensorflow", reason="TFLite files are made with TensorFlow: "
                                                  "pip install -r requirements-mobile.txt")
    pytest.importorskip("ai_edge_litert", reason="LiteRT runs .tflite files: pip install -r requirements-mobile.txt")
    from src.runtime.metadata import attach_tflite_metadata  # pylint: disable=import-outside-toplevel
    root = tmp_path_factory.mktemp("tflite_files")
    files = {}
    for channels in (3, 1):
        body = _tf_body(tf, channels)
        for name, shape, int8, kind in (("float", [1, *TILE, channels], False, "float"),
                                        ("int8", [1, *TILE, channels], True, "int8"),
                                        ("dyn", [1, None, None, channels], False, "float")):
            raw = _tf_convert(tf, body, shape, int8)
            key = f"{name}{'_y' if channels == 1 else ''}"
            files[key + "_plain"] = str(root / f"{key}_plain.tflite")
            with open(files[key + "_plain"], "wb") as f:
                f.write(raw)
            files[key] = str(root / f"{key}.tflite")
            with open(files[key], "wb") as f:
                f.write(attach_tflite_metadata(raw, _tf_meta(channels, kind)))
        if channels == 3:  # the same model taking and giving NCHW (as a file converted from ONNX without transposes)
            nchw = _tf_convert(tf, lambda x, body=body: tf.transpose(body(tf.transpose(x, [0, 2, 3, 1])), [0, 3, 1, 2]),
                               [1, 3, *TILE])
            files["nchw"] = str(root / "nchw.tflite")
            with open(files["nchw"], "wb") as f:
                f.write(attach_tflite_metadata(nchw, _tf_meta(3, "float")))
        files["ref" + ("_y" if channels == 1 else "")] = (
            lambda x, body=body: body(tf.constant(x.transpose(0, 2, 3, 1))).numpy().transpose(0, 3, 1, 2))
    files["root"] = root
    return files


def test_tflite_metadata_round_trip_keeps_the_graph(tflite):
    from ai_edge_litert.interpreter import Interpreter  # pylint: disable=import-outside-toplevel
    from src.runtime.metadata import (attach_tflite_metadata,  # pylint: disable=import-outside-toplevel
                                     read_tflite_metadata)
    assert read_tflite_metadata(tflite["float"]) == _tf_meta(3, "float")
    assert read_tflite_metadata(tflite["float_plain"]) == {}
    with open(tflite["float"], "rb") as f:
        again = attach_tflite_metadata(f.read(), {"sr.scale": "3"})  # replaces, does not add a second entry
    path = str(tflite["root"] / "again.tflite")
    with open(path, "wb") as f:
        f.write(again)
    assert read_tflite_metadata(path) == {"sr.scale": "3"}
    x = np.random.default_rng(0).random((1, *TILE, 3)).astype(np.float32)
    outputs = []
    for p in (tflite["float_plain"], tflite["float"], path):
        interpreter = Interpreter(model_path=p)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))
    assert np.array_equal(outputs[0], outputs[1]) and np.array_equal(outputs[0], outputs[2])


@pytest.mark.parametrize("size", [TILE, (37, 50), (16, 70)])
def test_tflite_float_runs_nhwc_in_windows_like_the_whole_image(tflite, size):
    runner = open_exported(tflite["float"])
    assert (runner.io.layout, runner.io.tile_hw, runner.scale, runner.n_colors) == ("NHWC", TILE, S, 3)
    assert runner.kind == "float TFLite (file)"
    x = _nchw(_smooth(*size, seed=size[1]))
    assert np.abs(runner.run(x) - tflite["ref"](x)).max() < EXACT
    dynamic = open_exported(tflite["dyn"])  # shape signature 1x?x?x3: resized to each input, no windows
    assert dynamic.io.tile_hw is None and np.abs(dynamic.run(x) - tflite["ref"](x)).max() < EXACT


def test_an_nchw_tflite_file_is_fed_nchw(tflite):
    runner = open_exported(tflite["nchw"])
    assert (runner.io.layout, runner.io.tile_hw) == ("NCHW", TILE)
    x = _nchw(_smooth(37, 50, seed=4))
    assert np.abs(runner.run(x) - tflite["ref"](x)).max() < EXACT


def test_tflite_int8_with_uint8_pixels_uses_the_file_quantization(tflite):
    from src.runtime.tflite_runner import quantize  # pylint: disable=import-outside-toplevel
    runner = open_exported(tflite["int8"])
    assert runner.kind == "int8 TFLite (file, uint8 IO)"
    assert runner.input["dtype"] == np.uint8 and runner.output["dtype"] == np.uint8
    scale, zero = runner.in_q
    assert zero == 0 and abs(scale - 1 / 255) < 1e-9
    pixels = np.arange(256, dtype=np.uint8)
    assert np.array_equal(quantize(pixels.astype(np.float32) / 255, np.uint8, scale, zero), pixels)
    x = _nchw(_smooth(37, 50, seed=2))
    out, ref = runner.run(x), tflite["ref"](x)
    assert out.shape == ref.shape
    assert np.abs(out * 255 - np.round(out * 255)).max() < 1e-3  # uint8 output: multiples of 1/255
    # int8 vs float: close, not equal (measured mean 0.003, max 0.013)
    assert np.abs(out - ref).mean() < 0.01 and np.abs(out - ref).max() < 0.03
    assert np.abs(out - ref).max() > 0  # it did run quantized


def test_files_without_metadata_run_with_a_notice(tflite, abpn, tmp_path):
    notes = []
    # random weights reproduce no test image, so the range its uint8 input declares is confirmed by the option
    runner = open_exported(tflite["int8_plain"], log=notes.append, pixel_range="1")
    assert runner.metadata is None and (runner.scale, runner.n_colors) == (S, 3) and len(notes) == 1
    assert "carries no SR metadata" in notes[0] and "from its input/output shapes" in notes[0]
    model = onnx.load(abpn["fixed"])
    del model.metadata_props[:]
    old = str(tmp_path / "old.onnx")
    onnx.save(model, old)
    notes.clear()
    # a float file says nothing of its pixel range and random weights prove none: it is given
    runner = open_exported(old, log=notes.append, pixel_range="1")
    assert (runner.scale, runner.io.tile_hw) == (3, TILE) and "carries no SR metadata" in notes[0]


# ---- eval.py / infer.py on files ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """data/benchmark/{SetA: images that fill 16x24 LR windows at x2 and x3, SetS: one smaller one}."""
    root = tmp_path_factory.mktemp("mobile_eval")
    for name, sizes in (("SetA", [(60, 96), (48, 84)]), ("SetS", [(36, 48)])):
        folder = root / "data" / "benchmark" / name / "HR"
        folder.mkdir(parents=True)
        for i, (h, w) in enumerate(sizes):
            cv2.imwrite(str(folder / f"img{i}.png"), np.round(_smooth(h, w, seed=i + 10) * 255).astype(np.uint8))
    return root


def _eval_args(dataset, pre_trained, sets="SetA", *extra):
    return ["--pre_trained", pre_trained, "--data_path", str(dataset / "data"), "--eval_datasets", sets,
            "--cache_dir", str(dataset / "cache"), "--output_path", str(dataset / "out"), *extra]


def _evaluate(args):
    return run_evaluation(get_config(args), log=lambda *_: None)


def _per_image(report, name):
    return [r["psnr"] for r in report["results"][name]["per_image"]]


def test_eval_cli_on_a_fixed_onnx_file_gives_the_checkpoint_psnr(abpn, dataset):
    result = dataset / "file.json"
    proc = _run_cli("eval.py", *_eval_args(dataset, abpn["fixed"], "SetA,SetS", "--result_file", str(result)))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(result.read_text())
    ckpt = _evaluate(_eval_args(dataset, abpn["ckpt"], "SetA,SetS", "--model", "abpn", "--variant", "M2C8",
                                "--scale", "3"))
    assert (report["model"], report["variant"], report["scale"]) == ("abpn", "M2C8", 3)
    assert report["kind"] == "float ONNX (file)" and report["fixed_input_hw"] == list(TILE)
    assert report["protocol"] == ckpt["protocol"]
    assert np.allclose(_per_image(report, "SetA"), _per_image(ckpt, "SetA"), atol=EXACT_DB, rtol=0)
    # SetS (12x16 LR) is padded up to the 16x24 window: close, not equal (measured 0.053 dB with these random
    # weights on a 12x16 image; the real ABPN x3 at 360x640 on Set5/Set14 differs by 0.002-0.005 dB)
    diff = abs(report["results"]["SetS"]["psnr"] - ckpt["results"]["SetS"]["psnr"])
    assert 0 < diff < 0.1
    assert f"{report['results']['SetA']['psnr']:.2f}" in proc.stdout


def test_eval_on_ort_and_y_only_files_gives_the_checkpoint_psnr(abpn, dataset, tmp_path):
    ort = _evaluate(_eval_args(dataset, abpn["ort"]))
    ckpt = _evaluate(_eval_args(dataset, abpn["ckpt"], "SetA", "--model", "abpn", "--variant", "M2C8", "--scale", "3"))
    assert ort["kind"] == "float ORT (file)"
    assert np.allclose(_per_image(ort, "SetA"), _per_image(ckpt, "SetA"), atol=EXACT_DB, rtol=0)
    if not os.path.isfile(SHIPPED_SESR):
        pytest.skip(f"{SHIPPED_SESR} is not in this checkout")
    net, _ = load_for_inference("sesr", "M5", 2, SHIPPED_SESR, {})
    net.set_train(False)
    path = save_onnx(traced_onnx(net, np.zeros((1, 1) + TILE, np.float32)), str(tmp_path / "sesr_y.onnx"),
                     export_metadata(net))
    y_file = _evaluate(_eval_args(dataset, path))
    y_ckpt = _evaluate(_eval_args(dataset, SHIPPED_SESR, "SetA", "--model", "sesr", "--variant", "M5", "--scale", "2"))
    assert y_file["scale"] == 2 and y_file["model"] == "sesr"
    assert np.allclose(_per_image(y_file, "SetA"), _per_image(y_ckpt, "SetA"), atol=EXACT_DB, rtol=0)


def test_eval_on_tflite_files_matches_the_tensorflow_model(tflite, dataset):
    from src.metrics import calculate_psnr  # pylint: disable=import-outside-toplevel
    report = _evaluate(_eval_args(dataset, tflite["float"]))
    assert report["kind"] == "float TFLite (file)" and report["layout"] == "NHWC" and report["scale"] == S

    class _Reference:  # the TF function on whole images, as a network for SRPredictor
        n_colors, receptive_radius = 3, 2

        def __call__(self, x):
            from mindspore import Tensor  # pylint: disable=import-outside-toplevel
            return Tensor(tflite["ref"](x.asnumpy()))

        def set_train(self, mode=False):
            return self

        def set_inputs(self, *inputs):
            return self
    predictor = SRPredictor(_Reference(), S, -1)
    from src.data.eval_sets import load_pair, resolve_eval_set  # pylint: disable=import-outside-toplevel
    eval_set = resolve_eval_set(str(dataset / "data"), "SetA", S)
    expected = []
    for image in eval_set.images:
        lr, hr = load_pair(eval_set, image, S, 12, str(dataset / "cache"))
        expected.append(calculate_psnr(predictor.predict(lr), hr, S, "y"))
    assert np.allclose(_per_image(report, "SetA"), expected, atol=EXACT_DB, rtol=0)
    int8 = _evaluate(_eval_args(dataset, tflite["int8"]))
    assert int8["kind"] == "int8 TFLite (file, uint8 IO)"
    assert abs(int8["results"]["SetA"]["psnr"] - report["results"]["SetA"]["psnr"]) < 0.2  # measured 0.01 dB
    y_only = _evaluate(_eval_args(dataset, tflite["int8_y"]))
    assert y_only["results"]["SetA"]["images"] == 2 and y_only["kind"] == "int8 TFLite (file, uint8 IO)"


@pytest.mark.parametrize("key", ["int8", "ort"])
def test_infer_cli_writes_images_from_tflite_and_ort(tflite, abpn, dataset, tmp_path, key):
    path = tflite["int8"] if key == "int8" else abpn["ort"]
    image = str(dataset / "data" / "benchmark" / "SetA" / "HR" / "img1.png")  # 48x84, larger than the window
    proc = _run_cli("infer.py", "--file_name", path, "--input_path", image, "--output_path", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    scale = S if key == "int8" else 3
    written = cv2.imread(str(tmp_path / f"img1_x{scale}.png"))[:, :, ::-1]
    lr = cv2.imread(image)[:, :, ::-1]
    expected = SRPredictor(open_exported(path), scale).predict(np.ascontiguousarray(lr))
    assert written.shape == (48 * scale, 84 * scale, 3) and np.array_equal(written, expected)
    assert ("TFLite" if key == "int8" else "ORT") in proc.stdout


# ---- bad inputs ---------------------------------------------------------------------------------------------

def test_a_missing_runtime_is_one_line_naming_the_requirements(tflite, abpn, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(MissingRuntimeError, match="ai-edge-litert.*requirements-mobile.txt"):
        open_exported(tflite["float"])
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingRuntimeError, match="onnxruntime.*pip install -r requirements"):
        open_exported(abpn["ort"])


def test_corrupt_tflite_and_ort_files_are_one_line(tflite, abpn, tmp_path):
    with open(tflite["int8"], "rb") as f:
        tfl = f.read()
    with open(abpn["ort"], "rb") as f:
        ort = f.read()
    with open(abpn["fixed"], "rb") as f:
        onnx_bytes = f.read()
    cases = {"random.tflite": RNG.integers(0, 256, 4096, dtype=np.uint8).tobytes(), "empty.tflite": b"",
             "truncated.tflite": tfl[:len(tfl) // 2], "onnx.tflite": onnx_bytes,
             "random.ort": RNG.integers(0, 256, 4096, dtype=np.uint8).tobytes(), "truncated.ort": ort[:len(ort) // 2],
             "tflite.ort": tfl, "ort.tflite": ort}
    for name, data in cases.items():
        path = str(tmp_path / name)
        with open(path, "wb") as f:
            f.write(data)
        fmt = "TFLite" if name.endswith(".tflite") else "ORT"
        with pytest.raises(ExportedModelError) as info:
            open_exported(path)
        message = str(info.value)
        if name in ("tflite.ort", "ort.tflite"):  # the file says what it is
            kind, ext = ("a TFLite", ".tflite") if name == "tflite.ort" else ("an ORT", ".ort")
            assert message == (f"{path} is {kind} file, not what its extension says: rename it to "
                               f"{os.path.splitext(path)[0] + ext}"), message
            continue
        assert message.startswith(f"{path} is not a readable {fmt} model ("), (name, message)
        assert message.endswith("; re-export it with export.py") and "\n" not in message, (name, message)
        if name == "truncated.tflite":
            assert "damaged or truncated" in message, message


def test_eval_refuses_quantization_options_and_a_wrong_scale_with_a_file(abpn, dataset):
    proc = _run_cli("eval.py", *_eval_args(dataset, abpn["fixed"], "SetA", "--quant_method", "dbdc"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: --quant_method quantizes a checkpoint") and abpn["fixed"] in proc.stderr
    with pytest.raises(ValueError, match=r"upscales x3 but --scale is 2; drop --scale or pass --scale 3"):
        _evaluate(_eval_args(dataset, abpn["fixed"], "SetA", "--scale", "2"))
    with pytest.raises(ValueError, match=r"holds a abpn model but --model is sesr"):
        _evaluate(_eval_args(dataset, abpn["fixed"], "SetA", "--model", "sesr"))


def test_cli_refusals_with_a_tflite_file_are_one_line(tflite, dataset, tmp_path):
    """LiteRT logs "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on opening a file: kept out of
    stderr, so a refusal after it (a wrong --scale) stays one line; a folder named like a file is named so."""
    proc = _run_cli("eval.py", *_eval_args(dataset, tflite["int8"], "SetA", "--scale", str(S + 1)))
    assert proc.returncode == 2 and proc.stderr.splitlines() == [
        f"error: {tflite['int8']} upscales x{S} but --scale is {S + 1}; drop --scale or pass --scale {S}"], proc.stderr
    folder = tmp_path / "model.tflite"
    folder.mkdir()
    proc = _run_cli("eval.py", *_eval_args(dataset, str(folder), "SetA"))
    assert proc.returncode == 2 and proc.stderr.splitlines() == [
        f"error: --pre_trained {folder} is a folder, not an exported model file; pass the file"], proc.stderr
