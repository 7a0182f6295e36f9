"""Files from the TensorFlow/TFLite world: scored correctly or refused, and imported exactly.

Pixel range proven (a 0..1 file, a 0..255 file, a file whose integer input lies), the unknown-model
label, the receptive radius measured on a file against the one its network declares, import of float
TFLite files and Keras SavedModels equal to the source, and hostile or mismatched sources refused with
one line (exit 2). The MLPerf / ABPN authors' files come from ../shared (SR_SHARED); the rest is made here.
"""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
import mindspore as ms
from mindspore import Tensor

from conftest import ROOT
from src.runtime.metadata import ExportedModelError
from src.runtime.runners import open_exported
from src.models.registry import create_model
from src.utils.file_probe import measure_receptive_radius, probe_image
from src.weights.loader import load_for_inference

SHARED = os.environ.get("SR_SHARED", os.path.join(ROOT, "..", "shared"))
MLPERF = os.path.join(SHARED, "weights", "mlperf_edsr_x2")
ABPN_TF = os.path.join(SHARED, "weights", "abpn_authors_tf_x3")
SET5 = os.path.join(SHARED, "data")
SHIPPED_SESR = os.path.join(ROOT, "pretrained", "sesr_M5_x2.ckpt")
needs_mlperf = pytest.mark.skipif(not os.path.isfile(os.path.join(MLPERF, "edsr_f32b5_fp32.tflite")),
                                  reason="MLPerf EDSR files not in ../shared (SR_SHARED)")
needs_abpn_tf = pytest.mark.skipif(not os.path.isdir(os.path.join(ABPN_TF, "saved_model")),
                                   reason="ABPN authors' files not in ../shared (SR_SHARED)")


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return pytest.importorskip("tensorflow")


def _sesr_onnx(tmp_path, name="sesr.onnx"):
    """The shipped SESR-M5 x2 (Y in, Y out, [0, 1]) as a float ONNX file without SR metadata."""
    net, _ = load_for_inference("sesr", "M5", 2, SHIPPED_SESR)
    path = str(tmp_path / name)
    ms.export(net, Tensor(np.zeros((1, 1, 20, 22), np.float32)), file_name=path[:-5], file_format="ONNX")
    model = onnx.load(path)
    del model.metadata_props[:]
    onnx.save(model, path)
    return net, path


def _in_0_255(src, dst):
    """``src`` (an ONNX graph on [0, 1]) wrapped to take and give pixels in 0..255, as other projects' files do."""
    model = onnx.load(src)
    graph = model.graph
    inp, out = graph.input[0].name, graph.output[0].name
    for node in graph.node:
        node.input[:] = ["x01" if i == inp else i for i in node.input]
        node.output[:] = ["y01" if o == out else o for o in node.output]
    graph.initializer.extend([onnx.numpy_helper.from_array(np.array(1 / 255, np.float32), "inv255"),
                              onnx.numpy_helper.from_array(np.array(255, np.float32), "k255")])
    graph.node.insert(0, onnx.helper.make_node("Mul", [inp, "inv255"], ["x01"]))
    graph.node.append(onnx.helper.make_node("Mul", ["y01", "k255"], [out]))
    onnx.save(model, dst)
    return dst


def test_a_0_1_file_and_a_0_255_file_are_each_proven_on_a_test_image(tmp_path):
    net, plain = _sesr_onnx(tmp_path)
    wide = _in_0_255(plain, str(tmp_path / "sesr_255.onnx"))
    notes = []
    r01, r255 = open_exported(plain, log=notes.append), open_exported(wide, log=notes.append)
    assert (r01.pixel_range, r255.pixel_range) == (1.0, 255.0)
    assert "pixels in 0..1 (proven on a test image" in notes[0] and "pixels in 0..255 (proven" in notes[1]
    lr = np.random.default_rng(0).random((1, 1, 20, 22)).astype(np.float32)
    ref = net(Tensor(lr)).asnumpy()
    for runner in (r01, r255):  # both give the network's own [0, 1] output
        assert np.abs(runner(Tensor(lr)).asnumpy() - ref).max() < 1e-4


def test_a_range_given_that_the_file_contradicts_or_cannot_prove_is_refused(tmp_path):
    _, plain = _sesr_onnx(tmp_path)
    runner = open_exported(plain, log=lambda _: None, pixel_range="255")  # given: taken, scores said
    assert runner.pixel_range == 255.0
    # random weights reproduce no image: 'auto' cannot prove a range and says so
    rand = create_model("edsr", "f32b5", 2)  # no anchor: random weights give no image back
    rand.set_train(False)
    path = str(tmp_path / "rand.onnx")
    ms.export(rand, Tensor(np.zeros((1, 3, 20, 22), np.float32)), file_name=path[:-5], file_format="ONNX")
    model = onnx.load(path)
    del model.metadata_props[:]
    onnx.save(model, path)
    with pytest.raises(ExportedModelError, match="does not tell its pixel range .*pass --pixel_range 1 or 255"):
        open_exported(path, log=lambda _: None)


def _tflite_with_input_scale(src, dst, scale):
    """A copy of ``src`` whose (integer) input tensor declares ``scale``: a file that lies about its range."""
    from ai_edge_litert import schema_py_generated as schema  # pylint: disable=import-outside-toplevel
    import flatbuffers  # pylint: disable=import-outside-toplevel
    with open(src, "rb") as fh:
        model = schema.ModelT.InitFromPackedBuf(bytearray(fh.read()), 0)
    graph = model.subgraphs[0]
    graph.tensors[graph.inputs[0]].quantization.scale = [scale]
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    with open(dst, "wb") as fh:
        fh.write(bytes(builder.Output()))
    return dst


@needs_mlperf
def test_third_party_int8_files_read_their_range_and_a_lying_one_is_refused(tmp_path):
    pytest.importorskip("ai_edge_litert")
    qat = os.path.join(MLPERF, "edsr_f32b5_QAT.tflite")
    notes = []
    runner = open_exported(qat, log=notes.append)
    assert runner.pixel_range == 255.0 and runner.metadata is None and runner.scale == 2
    assert "uint8 input (scale 1, zero point 0) spans 0..255" in notes[0]
    # measured on the file: the radius its network (EDSR-F32B5, mobile layout) declares
    assert runner.receptive_radius == create_model("edsr", "f32b5", 2).receptive_radius == 13
    liar = _tflite_with_input_scale(qat, str(tmp_path / "liar.tflite"), 1 / 255)
    with pytest.raises(ExportedModelError, match="spans 0..1, but a smooth test image does not come back at that "
                                                 "range"):
        open_exported(liar, log=lambda _: None)


def _eval(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "eval.py"), *args], cwd=ROOT, capture_output=True,
                          text=True, check=False)


def test_a_file_without_metadata_is_labelled_unknown_not_the_configured_model(tmp_path):
    _, plain = _sesr_onnx(tmp_path)
    wide = _in_0_255(plain, str(tmp_path / "wide.onnx"))
    proc = _eval("--pre_trained", wide, "--eval_datasets", "Samples", "--data_path", str(tmp_path),
                 "--result_file", str(tmp_path / "r.json"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    intro = next(line for line in proc.stdout.splitlines() if line.startswith("evaluating"))
    assert "(unknown model x2, NCHW, pixels 0..255, fixed 20x22 windows)" in intro and "sesr" not in intro
    report = json.load(open(tmp_path / "r.json", encoding="utf-8"))
    assert report["model"] == "unknown model" and report["pixel_range"] == 255.0
    assert report["receptive_radius_source"] == "measured"


def test_measured_radius_equals_the_declared_one_on_a_float_graph():
    for model, variant, scale in (("abpn", "M4C28", 3), ("edsr", "f32b5", 2), ("sesr", "M5", 2)):
        net = create_model(model, variant, scale)
        net.set_train(False)
        radius, border = measure_receptive_radius(lambda x, n=net: n(Tensor(x)).asnumpy(),
                                                  probe_image(41, 41, net.n_colors), scale)
        assert (radius, border) == (net.receptive_radius, False), model


# ---- import ----

def _convert(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "convert_weights.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, check=False)


def _one_error_line(proc):
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith(("INFO:", "WARNING"))]
    return proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr


def _set5(name="baby", scale=3):
    """(LR float32 1 x 3 x h x w in [0, 1], HR uint8 H x W x 3) of a Set5 image (MATLAB-bicubic LR)."""
    from src.data.image_io import read_rgb  # pylint: disable=import-outside-toplevel
    bench = os.path.join(SET5, "benchmark", "Set5")
    lr = read_rgb(os.path.join(bench, "LR_bicubic_matlab", f"X{scale}", f"{name}x{scale}.png"))
    hr = read_rgb(os.path.join(bench, "HR", f"{name}.png"))
    return lr.transpose(2, 0, 1)[None].astype(np.float32) / 255.0, hr


@needs_mlperf
def test_mlperf_edsr_tflite_imports_equal_to_the_file(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from src.weights import tf_import  # pylint: disable=import-outside-toplevel
    src = os.path.join(MLPERF, "edsr_f32b5_fp32.tflite")
    dst = str(tmp_path / "edsr.ckpt")
    proc = _convert("--src", src, "--dst", dst)
    assert proc.returncode == 0, proc.stderr
    assert "edsr-f32b5 x2 from its 13 convs; pixels in 0..255 (proven" in proc.stdout
    net, _ = load_for_inference("edsr", "f32b5", 2, dst)
    image = probe_image(60, 80, 3, seed=3)
    image[:, :, 20:40, 30:50] = np.random.default_rng(1).random((1, 3, 20, 20))  # texture as in real images
    diff = tf_import.max_import_diff(lambda x: net(Tensor(x)).asnumpy(), tf_import.read_tflite_source(src), 255.0,
                                     [image])
    assert diff <= tf_import.MAX_IMPORT_DIFF


@needs_abpn_tf
def test_abpn_authors_saved_model_imports_equal_on_a_real_image_and_in_psnr(tmp_path):
    _tf()
    from src.metrics.psnr_ssim import calculate_psnr  # pylint: disable=import-outside-toplevel
    from src.weights import tf_import  # pylint: disable=import-outside-toplevel
    folder = os.path.join(ABPN_TF, "saved_model")
    dst = str(tmp_path / "abpn.ckpt")
    proc = _convert("--src", folder, "--dst", dst, "--model", "abpn", "--scale", "3")
    assert proc.returncode == 0, proc.stderr
    net, _ = load_for_inference("abpn", "M4C28", 3, dst)
    source = tf_import.read_saved_model_source(folder)
    lr, hr = _set5("baby", 3)  # a real image
    theirs = np.clip(source.run(lr * 255.0) / 255.0, 0, 1)
    ours = np.clip(net(Tensor(lr)).asnumpy(), 0, 1)
    assert np.abs(theirs - ours).max() <= tf_import.MAX_IMPORT_DIFF
    hr = hr[:ours.shape[2], :ours.shape[3]]  # HR cropped to the output (a multiple of the scale)
    to_u8 = lambda x: np.round(x[0].transpose(1, 2, 0) * 255).astype(np.uint8)
    psnr_theirs, psnr_ours = (calculate_psnr(to_u8(x), hr, shave=3) for x in (theirs, ours))
    assert abs(psnr_theirs - psnr_ours) < 0.01 and psnr_ours > 30
    # every Set5 / Set14 image (HR cropped to a multiple of 12, LR by MATLAB bicubic as eval.py makes it): the
    # mean PSNR-Y of the checkpoint equals the SavedModel's within 0.01 dB
    from src.data.image_io import read_rgb  # pylint: disable=import-outside-toplevel
    from src.data.imresize import imresize  # pylint: disable=import-outside-toplevel
    for name in ("Set5", "Set14"):
        folder = os.path.join(SET5, "benchmark", name, "HR")
        scores = []
        for file in sorted(os.listdir(folder)):
            hr = read_rgb(os.path.join(folder, file))
            hr = hr[:hr.shape[0] // 12 * 12, :hr.shape[1] // 12 * 12]
            lr = np.round(np.clip(imresize(hr.astype(np.float64) / 255.0, 1 / 3), 0, 1) * 255) / 255.0
            lr = lr.transpose(2, 0, 1)[None].astype(np.float32)
            ours = np.clip(net(Tensor(lr)).asnumpy(), 0, 1)
            theirs = np.clip(source.run(lr * 255.0) / 255.0, 0, 1)
            scores.append([calculate_psnr(to_u8(x), hr, shave=3) for x in (ours, theirs)])
        mean_ours, mean_theirs = np.mean(scores, axis=0)
        assert abs(mean_ours - mean_theirs) < 0.01, (name, mean_ours, mean_theirs)


@needs_abpn_tf
def test_an_int8_tflite_is_refused_by_the_importer(tmp_path):
    dst = tmp_path / "never.ckpt"
    proc = _convert("--src", os.path.join(ABPN_TF, "base7_D4C28_bs16ps64_lr1e-3_qat.tflite"), "--dst", str(dst))
    assert _one_error_line(proc) and "takes float weights only" in proc.stderr
    assert not dst.exists()


@needs_abpn_tf
def test_a_source_contradicting_the_given_model_is_refused(tmp_path):
    proc = _convert("--src", os.path.join(ABPN_TF, "saved_model"), "--dst", str(tmp_path / "x.ckpt"),
                    "--model", "edsr")
    assert _one_error_line(proc) and "is abpn-M4C28 x3 (from its convs) but --model is edsr" in proc.stderr
    assert not os.path.exists(tmp_path / "x.ckpt")


def _keras2_style_saved_model(folder, layers):
    """A SavedModel whose variables are named as Keras 2 names them (layer_with_weights-<i>/<name>), with
    ``layers`` = [{name: array}], serving ``tf.identity`` of its input."""
    tf = _tf()
    root = tf.Module()
    for i, weights in enumerate(layers):
        layer = tf.Module()
        for name, value in weights.items():
            setattr(layer, name, tf.Variable(value))
        setattr(root, f"layer_with_weights-{i}", layer)
    root.f = tf.function(lambda x: tf.identity(x), input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
    tf.saved_model.save(root, folder, signatures={"serving_default": root.f})
    return folder


def test_a_saved_model_of_another_architecture_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    conv = lambda cin, cout: {"kernel": rng.random((3, 3, cin, cout), np.float32), "bias": np.zeros(cout, np.float32)}
    with_bn = _keras2_style_saved_model(str(tmp_path / "bn"), [conv(3, 8), {"gamma": np.ones(8, np.float32),
                                                                             "beta": np.zeros(8, np.float32)}])
    chain = _keras2_style_saved_model(str(tmp_path / "chain"), [conv(3, 8), conv(8, 5), conv(5, 12)])
    for folder, words in ((with_bn, "not a 3x3 conv kernel and bias"), (chain, "neither ABPN")):
        proc = _convert("--src", folder, "--dst", str(tmp_path / "x.ckpt"))
        assert _one_error_line(proc) and words in proc.stderr, proc.stderr
    assert not os.path.exists(tmp_path / "x.ckpt")


def test_a_tflite_with_two_inputs_and_hostile_bytes_are_refused(tmp_path):
    tf = _tf()
    pytest.importorskip("ai_edge_litert")

    @tf.autograph.experimental.do_not_convert
    def two(a, b):
        return tf.nn.depth_to_space(tf.concat([a, b, a, b], -1), 2)

    spec = [tf.TensorSpec([1, 8, 8, 3], tf.float32)] * 2
    fn = tf.function(two, input_signature=spec)
    two_path = tmp_path / "two.tflite"
    two_path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn).convert())
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(os.urandom(3000))
    truncated = tmp_path / "cut.tflite"
    truncated.write_bytes(two_path.read_bytes()[:300])
    for path, words in ((two_path, "2 inputs and 1 outputs"), (junk, "not a readable TFLite file"),
                        (truncated, "not a readable TFLite file")):
        proc = _convert("--src", str(path), "--dst", str(tmp_path / "x.ckpt"))
        assert _one_error_line(proc) and words in proc.stderr, proc.stderr
    assert not os.path.exists(tmp_path / "x.ckpt")


def test_a_pth_without_model_and_a_saved_model_missing_its_variables_are_refused(tmp_path):
    pth = tmp_path / "w.pth"
    pth.write_bytes(b"not a zip")
    proc = _convert("--src", str(pth), "--dst", str(tmp_path / "x.ckpt"))
    assert _one_error_line(proc) and "pass --model and --scale" in proc.stderr
    if os.path.isdir(os.path.join(ABPN_TF, "saved_model")):
        broken = tmp_path / "sm"
        shutil.copytree(os.path.join(ABPN_TF, "saved_model"), broken)
        os.remove(broken / "variables" / "variables.index")
        proc = _convert("--src", str(broken), "--dst", str(tmp_path / "x.ckpt"))
        assert _one_error_line(proc) and "is not a SavedModel folder" in proc.stderr


def test_head_to_head_docs_and_readme_block_are_written_from_the_json(tmp_path):
    """docs/head_to_head.md and the block of docs/evaluation.md are exactly what scripts/head_to_head.py --table
    writes from docs/head_to_head.json, and the block names the command that measured it."""
    data_path = os.path.join(ROOT, "docs", "head_to_head.json")
    readme = tmp_path / "evaluation.md"
    shutil.copy(os.path.join(ROOT, "docs", "evaluation.md"), readme)
    md = tmp_path / "head_to_head.md"
    front = tmp_path / "README.md"
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    front.write_text(re.sub(r"(<!-- head_to_head_summary:begin -->\n).*?(<!-- head_to_head_summary:end -->)",
                            r"\1\2", text, flags=re.S), encoding="utf-8")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "head_to_head.py"), "--table", data_path,
                           "--md", str(md), "--readme", str(readme), "--summary_md", str(front)], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert front.read_text(encoding="utf-8") == text  # the README's short table, written back whole
    assert md.read_text(encoding="utf-8") == open(os.path.join(ROOT, "docs", "head_to_head.md"), encoding="utf-8").read()
    assert readme.read_text(encoding="utf-8") == open(os.path.join(ROOT, "docs", "evaluation.md"),
                                                      encoding="utf-8").read()
    with open(data_path, encoding="utf-8") as fh:
        data = json.load(fh)
    assert all(c in readme.read_text(encoding="utf-8") for c in data["commands"])
    for row in data["rows"]:  # every file was timed in the one run and scored on every set
        assert set(row["latency_ms"]) == set(row["files"]) and all(len(v) == 3 for v in row["psnr_ssim"].values())


def test_a_saved_model_whose_serving_function_does_more_than_arithmetic_is_not_run(tmp_path):
    """The equality check runs the source graph; one that writes files (or does anything but arithmetic) is
    refused before TensorFlow runs it, and nothing is written."""
    tf = _tf()
    marker = tmp_path / "written_by_the_model"
    root = tf.Module()
    layer = tf.Module()
    layer.kernel = tf.Variable(np.zeros((3, 3, 3, 12), np.float32))
    layer.bias = tf.Variable(np.zeros(12, np.float32))
    setattr(root, "layer_with_weights-0", layer)

    def serve(x):
        tf.io.write_file(str(marker), "pwned")
        return tf.nn.depth_to_space(tf.concat([x, x, x, x], -1), 2)

    root.f = tf.function(serve, input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
    folder = str(tmp_path / "sm")
    tf.saved_model.save(root, folder, signatures={"serving_default": root.f})
    proc = _convert("--src", folder, "--dst", str(tmp_path / "x.ckpt"))
    assert _one_error_line(proc) and "WriteFile" in proc.stderr and "not plain arithmetic" in proc.stderr
    assert not marker.exists() and not os.path.exists(tmp_path / "x.ckpt")
    (tmp_path / "sm" / "saved_model.pb").write_bytes(os.urandom(500))
    proc = _convert("--src", folder, "--dst", str(tmp_path / "x.ckpt"))
    assert _one_error_line(proc) and "is not a readable SavedModel" in proc.stderr


def test_zoo_and_memory_tables_in_docs_and_readme_are_written_from_their_json(tmp_path):
    """docs/ptq_zoo.md and the ptq_zoo block of docs/quantization.md (with the imported EDSR-F32B5 rows), and the
    infer_memory block of docs/reliability.md, are what their scripts write from the JSON files."""
    readme = tmp_path / "quantization.md"
    shutil.copy(os.path.join(ROOT, "docs", "quantization.md"), readme)
    reliability = tmp_path / "reliability.md"
    shutil.copy(os.path.join(ROOT, "docs", "reliability.md"), reliability)
    sweeps = [os.path.join(ROOT, "docs", f"ptq_zoo_{m}.json") for m in
              ("abpn_M4C28_x3", "etds_M4C32_x3", "ecbsr_M4C16_x3", "sesr_M5_x2", "edsr_f32b5_x2")]
    md = tmp_path / "ptq_zoo.md"
    for args in ([os.path.join(ROOT, "scripts", "ptq_zoo_table.py"), *sweeps, "--out", str(md), "--readme", str(readme)],
                 [os.path.join(ROOT, "scripts", "bench_infer_memory.py"), "--image", "x", "--scale", "3", "--runs",
                  "x=y", "--table", os.path.join(ROOT, "docs", "infer_memory_8000.json"), "--readme", str(reliability)]):
        proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
    assert md.read_text(encoding="utf-8") == open(os.path.join(ROOT, "docs", "ptq_zoo.md"), encoding="utf-8").read()
    assert readme.read_text(encoding="utf-8") == open(os.path.join(ROOT, "docs", "quantization.md"),
                                                      encoding="utf-8").read()
    assert reliability.read_text(encoding="utf-8") == open(os.path.join(ROOT, "docs", "reliability.md"),
                                                           encoding="utf-8").read()
    assert "| edsr_f32b5_x2 | W4A4 | dbdc_recon |" in md.read_text(encoding="utf-8")
