"""TFLite / LiteRT export: float32, float16 and full-integer int8 files carrying the project's grids."""
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="TFLite export needs TensorFlow: pip install -r requirements-mobile.txt")
pytest.importorskip("ai_edge_litert", reason="TFLite checks need ai-edge-litert: pip install -r requirements-mobile.txt")

# pylint: disable=wrong-import-position
from conftest import ROOT, requires_shared, shared_dir
from test_export import _calibrated
from src.runtime import tflite_check
from src.runtime.metadata import read_tflite_metadata
from src.export.onnx.onnx_qdq import observe_output_ranges
from src.export.onnx.profiles import build_onnx
from src.export.tflite.tflite_convert import convert
from src.export.tflite.tflite_export import TFLiteOptions, export_tflite
from src.quantlib.quant_layers import quant_layers

MODELS = [("abpn", 3, {}), ("etds", 3, {}), ("ecbsr", 3, {}), ("sesr", 2, {}), ("sesr", 2, {"act": "relu"})]
IDS = ["abpn_x3", "etds_x3", "ecbsr_x3", "sesr_x2", "sesr_relu_x2"]
RNG = np.random.default_rng(5)


def _nets(model, scale, options):
    if not options:
        return _calibrated(model, scale)
    from src.models import create_model  # pylint: disable=import-outside-toplevel
    from src.models.registry import default_variant, to_deploy  # pylint: disable=import-outside-toplevel
    from src.quantlib.calibrate import calibrate  # pylint: disable=import-outside-toplevel
    from src.quantlib.quant_layers import QuantConfig  # pylint: disable=import-outside-toplevel
    nets = [to_deploy(create_model(model, default_variant(model), scale, form="train", **options)) for _ in range(2)]
    fp, q = nets
    q_params = {p.name: p for p in q.get_parameters()}
    for p in fp.get_parameters():
        q_params[p.name].set_data(p.data)
    calibrate(q, [RNG.random((2, 1, 16, 16)).astype(np.float32) for _ in range(2)], "dbdc", QuantConfig(8, 8))
    return fp, q


@pytest.fixture(scope="module", params=list(range(len(MODELS))), ids=IDS)
def files(request, tmp_path_factory):
    """(fp, q, example NCHW, float32 path, int8 path) of one model at 1 x C x 12 x 16."""
    model, scale, options = MODELS[request.param]
    fp, q = _nets(model, scale, options)
    n = fp.n_colors
    x = RNG.random((1, n, 12, 16)).astype(np.float32)
    root = tmp_path_factory.mktemp(IDS[request.param])
    paths = {}
    for quant in ("none", "int8"):
        paths[quant] = str(root / f"{quant}.tflite")
        export_tflite(fp, q, x, paths[quant], TFLiteOptions(quant, metadata={"sr.scale": str(scale)}),
                      log=lambda *_: None)
    return fp, q, x, paths


def _one_partition(path):
    report = tflite_check.xnnpack_partitions(path)
    assert report["partitions"] == 1 and report["left"] == [] and report["delegated"] == report["nodes"], report


def test_float32_file_matches_mindspore_and_runs_whole_on_xnnpack(files):
    from mindspore import Tensor  # pylint: disable=import-outside-toplevel
    fp, _, x, paths = files
    model = tflite_check.read_model(paths["none"])
    assert tflite_check.non_builtin_ops(model) == []
    assert {t["dtype"] for t in tflite_check.tensor_table(model)} == {"FLOAT32"}
    out = tflite_check.run_nchw(tflite_check.interpreter(paths["none"]), x)
    assert out.shape == tuple(fp(Tensor(x)).shape)
    assert np.abs(out - fp(Tensor(x)).asnumpy()).max() < 1e-4
    _one_partition(paths["none"])
    assert read_tflite_metadata(paths["none"])["sr.scale"] == str(fp.scale)


def _conv_ops(model):
    graph = model.subgraphs[0]
    names = tflite_check.op_names(model)
    return [op for op, name in zip(graph.operators, names) if name == "CONV_2D"]


def test_int8_file_carries_the_calibrated_grids(files):
    """Weights int8 per channel at the project's scales, int32 biases equal to round(b / (s_a s_w)),
    conv input activations on the calibrated grids (uint8 zero point z -> int8 z - 128). A conv
    before a PReLU writes [relu(y), relu(-k y)]: weights [W; -W] at scales [s; k s], biases [b; -b]."""
    _, q, _, paths = files
    model = tflite_check.read_model(paths["int8"])
    table = tflite_check.tensor_table(model)
    assert tflite_check.non_builtin_ops(model) == []
    assert tflite_check.float_ops_inside(model) == []
    names = tflite_check.op_names(model)
    assert names[0] == "QUANTIZE" and names[-1] == "DEQUANTIZE"
    convs = _conv_ops(model)
    weights = {i: tflite_check.constant_data(model, op.inputs[1]) for i, op in enumerate(convs)}
    matched, splits = set(), []
    for name, layer in quant_layers(q):
        w = layer.weight.asnumpy()
        step = layer.weight_quant.grid()[0].reshape(-1)
        w_int = np.clip(np.floor(w / step.reshape(-1, 1, 1, 1) + 0.5), -127, 127).astype(np.int8).transpose(0, 2, 3, 1)
        split_w = np.concatenate([w_int, -w_int])
        hits = [i for i, tw in weights.items() if tw.shape[1:] == w_int.shape[1:] and (
            (tw.shape[0] <= w_int.shape[0] and np.array_equal(tw, w_int[:tw.shape[0]]))  # ETDS's last conv drops
            or np.array_equal(tw, split_w))]                                          # its padding channel
        assert len(hits) == 1, (name, hits)
        op = convs[hits[0]]
        split = weights[hits[0]].shape[0] == 2 * w_int.shape[0]
        kept = w_int.shape[0] if split else weights[hits[0]].shape[0]
        w_entry, b_entry, x_entry = table[op.inputs[1]], table[op.inputs[2]], table[op.inputs[0]]
        assert w_entry["dtype"] == "INT8" and w_entry["quantized_dimension"] == 0
        np.testing.assert_allclose(w_entry["scale"][:kept], step[:kept], rtol=1e-6)
        if split:
            splits.append(hits[0])
            k = w_entry["scale"][kept:] / step
            assert np.all(k > 0) and np.allclose(k, k[0], rtol=1e-5), k
            assert int(table[op.outputs[0]]["zero_point"][0]) == -128  # [0, high]: relu halves
        assert not w_entry["zero_point"].any()
        a_step, a_zero = (float(v.reshape(-1)[0]) for v in layer.act_quant.grid())
        assert x_entry["dtype"] == "INT8"
        np.testing.assert_allclose(x_entry["scale"], [a_step], rtol=1e-6)
        assert int(x_entry["zero_point"][0]) == int(a_zero) - 128
        bias = layer.bias.asnumpy()[:kept]
        b_int = np.floor(bias / (np.float32(a_step) * step[:kept]) + 0.5).astype(np.int64)
        assert b_entry["dtype"] == "INT32"
        np.testing.assert_array_equal(tflite_check.constant_data(model, op.inputs[2]),
                                      np.concatenate([b_int, -b_int]) if split else b_int)
        matched.add(hits[0])
    assert len(matched) == len(list(quant_layers(q)))
    # the other CONV_2D ops are the PReLU mixes: 1x1 over [relu(y), relu(-k y)], weights (1, -slope / k),
    # each reading one split conv's output
    mixes = sorted(set(range(len(convs))) - matched)
    for i in mixes:
        w = weights[i]
        channels = w.shape[0]
        assert w.shape == (channels, 1, 1, 2 * channels)
        scale = table[convs[i].inputs[1]]["scale"]  # max(1, |slope / k|) / 127: the 1 is 127 unless |slope / k| > 1
        one = w[np.arange(channels), 0, 0, np.arange(channels)] * scale
        assert np.all(np.abs(one - 1) <= scale / 2 + 1e-7)
    from mindspore import nn  # pylint: disable=import-outside-toplevel
    prelus = sum(isinstance(cell, nn.PReLU) for _, cell in q.cells_and_names())
    assert len(mixes) == prelus and len(splits) == prelus, (len(mixes), len(splits), prelus)
    assert sorted(convs[i].inputs[0] for i in mixes) == sorted(convs[i].outputs[0] for i in splits)
    assert all(t["dtype"] in ("INT8", "INT32") for t in table if t["constant"])
    _one_partition(paths["int8"])


def test_int8_file_matches_the_fake_quant_model(files):
    from mindspore import Tensor  # pylint: disable=import-outside-toplevel
    _, q, x, paths = files
    out = tflite_check.run_nchw(tflite_check.interpreter(paths["int8"]), x)
    ref = q(Tensor(x)).asnumpy()
    model = tflite_check.read_model(paths["int8"])
    dequantize = model.subgraphs[0].operators[-1]
    grid = tflite_check.tensor_table(model)[dequantize.inputs[0]]
    if np.isclose(grid["scale"][0], 1 / 255, rtol=1e-6) and grid["zero_point"][0] == -128:
        ref = np.clip(ref, 0, 1)  # an output on the 8-bit image grid saturates at 0 and 1 (ECBSR has no clip)
    # integer requantisation and the conv-output / PReLU steps: a few 8-bit levels on random input
    assert np.abs(out - ref).max() < 0.03


def test_uint8_io_and_float16_weights(tmp_path):
    fp, q = _calibrated("abpn", 3)
    x = np.floor(RNG.random((1, 3, 12, 16)) * 255 + 0.5).astype(np.float32) / 255
    graph = build_onnx(fp, q, x, "mobile", "int8", observe_output_ranges(q, [x]))
    data = convert(graph, "int8", io_dtype="uint8")
    io = tflite_check.io_quantization(data)
    for role in ("input", "output"):
        dtype, scale, zero = io[role]
        assert dtype == "UINT8" and zero == 0 and np.isclose(scale, 1 / 255, rtol=1e-6), io
    assert tflite_check.float_ops_inside(tflite_check.read_model(data)) == []
    # one XNNPACK partition; the converter's uint8 <-> int8 QUANTIZE at the two ends (XNNPACK has no
    # uint8 <-> int8 conversion) run on the builtin kernels
    report = tflite_check.xnnpack_partitions(data)
    assert report["partitions"] == 1 and report["left"] == ["QUANTIZE", "QUANTIZE"], report
    names = tflite_check.op_names(tflite_check.read_model(data))
    assert names[0] == names[-1] == "QUANTIZE" and "DEQUANTIZE" not in names
    # the graph's input and output already are on the image grid: no requantisation op is added
    float_io = tflite_check.op_names(tflite_check.read_model(convert(graph, "int8")))
    assert names[1:-1] == float_io[1:-1], (names, float_io)
    out_u8 = tflite_check.run(tflite_check.interpreter(data), (x.transpose(0, 2, 3, 1) * 255).round().astype(np.uint8))
    float_io = convert(graph, "int8")
    out_f = tflite_check.run(tflite_check.interpreter(float_io), x.transpose(0, 2, 3, 1))
    assert out_u8.dtype == np.uint8 and np.abs(out_u8 / 255.0 - out_f).max() < 1e-6  # the same integers
    # float16: float16 weights, float compute, close to MindSpore
    from mindspore import Tensor  # pylint: disable=import-outside-toplevel
    data16 = convert(build_onnx(fp, None, x, "mobile", "none"), "float16")
    model = tflite_check.read_model(data16)
    table = tflite_check.tensor_table(model)
    conv_weights = [table[op.inputs[1]]["name"] for op in _conv_ops(model)]
    halves = {t["name"] for t in table if t["dtype"] == "FLOAT16" and t["constant"]}
    dequantized = [table[op.outputs[0]]["name"] for op, name in zip(model.subgraphs[0].operators,
                                                                     tflite_check.op_names(model)) if name == "DEQUANTIZE"]
    assert len(halves) >= len(conv_weights) > 0 and set(conv_weights) <= set(dequantized)
    out16 = tflite_check.run_nchw(tflite_check.interpreter(data16), x)
    assert np.abs(out16 - fp(Tensor(x)).asnumpy()).max() < 5e-3
    _one_partition(data16)


def test_translator_refuses_unknown_ops():
    fp, _ = _calibrated("etds", 3)
    graph = build_onnx(fp, None, RNG.random((1, 3, 8, 8)).astype(np.float32), "mobile", "none")
    graph.graph.node[0].op_type = "Tile"
    with pytest.raises(ValueError, match="Tile"):
        convert(graph, "none")
    with pytest.raises(ValueError, match="quantized"):
        convert(build_onnx(fp, None, RNG.random((1, 3, 8, 8)).astype(np.float32), "mobile", "none"), "int8")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from src.models import create_model  # pylint: disable=import-outside-toplevel
    from src.weights.checkpoint import model_meta, save_checkpoint  # pylint: disable=import-outside-toplevel
    root = tmp_path_factory.mktemp("tflite_cli")
    paths = {}
    for model, variant, scale in (("abpn", "M2C8", 3), ("sesr", "M5", 2)):
        net = create_model(model, variant, scale)
        paths[model] = str(root / f"{model}.ckpt")
        save_checkpoint(net, paths[model], meta=model_meta(net))
    return root, paths


def _export(root, ckpt, model, *extra, env=None):
    variant, scale = ("M2C8", "3") if model == "abpn" else ("M5", "2")
    channels = "3" if model == "abpn" else "1"
    args = ["--model", model, "--variant", variant, "--scale", scale, "--pre_trained", ckpt, "--output_path",
            str(root / "out"), "--input_shape", f"1,{channels},24,40", "--file_format", "TFLITE", *extra]
    return subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600, env=env)


def test_export_cli_writes_a_checked_float_tflite(checkpoints):
    root, paths = checkpoints
    # TF_CPP_MIN_LOG_LEVEL=3 (as a child of a process that imported TensorFlow inherits) does not stop the
    # start-up lines TensorFlow writes before reading it
    proc = _export(root, paths["abpn"], "abpn", env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr
    assert "XNNPACK takes" in proc.stdout and "1 partition(s)" in proc.stdout and "max |diff|" in proc.stdout
    # no library log lines (LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate", MindSpore's ONNX
    # deprecation WARNING): a refusal after them would not be one line
    assert proc.stderr.strip() == "", proc.stderr
    path = str(root / "out" / "abpn_M2C8_x3.tflite")
    meta = read_tflite_metadata(path)
    assert meta["sr.scale"] == "3" and "NHWC" in meta["sr.input"]


@pytest.mark.parametrize("model,extra,expected", [
    ("abpn", ["--quant", "int8", "--calib_path", "/nonexistent"], "calibration folder not found"),
    ("abpn", ["--io_dtype", "uint8"], "--quant int8"),
    ("sesr", ["--io_dtype", "uint8", "--quant", "int8", "--calib_path", "/nonexistent"], "calibration folder not found"),
    ("abpn", ["--file_format", "ONNX", "--quant", "float16"], "--quant float16 is a TFLite option"),
    ("abpn", ["--file_format", "ORT", "--io_dtype", "uint8"], "--io_dtype uint8 is a TFLite option"),
])
def test_export_cli_tflite_bad_inputs(checkpoints, model, extra, expected):
    root, paths = checkpoints
    proc = _export(root, paths[model], model, *extra)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], proc.stderr
    assert not os.path.exists(str(root / "out" / f"{model}_M2C8_x3_int8.tflite"))


def test_export_cli_without_tensorflow_names_requirements_mobile(checkpoints, tmp_path):
    root, paths = checkpoints
    blocker = tmp_path / "tensorflow"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('No module named tensorflow (blocked by the test)')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = _export(root, paths["abpn"], "abpn", env=env)
    assert proc.returncode == 2
    assert "requirements-mobile.txt" in proc.stderr and proc.stderr.strip().startswith("error:")
    assert "Traceback" not in proc.stderr


def test_uint8_io_refused_for_a_y_channel_model():
    from src.export.tflite.tflite_export import check_request  # pylint: disable=import-outside-toplevel
    with pytest.raises(ValueError, match="Y channel"):
        check_request("int8", "uint8", object(), 1)


@requires_shared
def test_int8_set5_psnr_within_005_db_of_fake_quant(tmp_path):
    """Calibrated on Set5-like data (random patches here): the int8 file's Set5 PSNR, run by the project's
    runner over fixed 64 x 64 windows with receptive-radius overlap, is within 0.05 dB of the fake-quant
    model's."""
    from types import SimpleNamespace  # pylint: disable=import-outside-toplevel
    from src.data.eval_sets import resolve_eval_set  # pylint: disable=import-outside-toplevel
    from src.engine.evaluator import evaluate_set  # pylint: disable=import-outside-toplevel
    from src.engine.inference import SRPredictor  # pylint: disable=import-outside-toplevel
    from src.runtime.metadata import export_metadata  # pylint: disable=import-outside-toplevel
    from src.runtime.runners import open_exported  # pylint: disable=import-outside-toplevel
    fp, q = _calibrated("abpn", 3)
    path = str(tmp_path / "tile.tflite")
    export_tflite(fp, q, RNG.random((1, 3, 64, 64)).astype(np.float32), path,
                  TFLiteOptions("int8", metadata=export_metadata(q, "int8")), log=lambda *_: None)
    config = SimpleNamespace(scale=3, shave=-1, gt_mod=12, metric_channel="y", cache_dir=str(tmp_path / "cache"),
                             data_dir="", output_path=str(tmp_path))
    eval_set = resolve_eval_set(os.path.join(shared_dir(), "data"), "Set5", 3)
    fq = evaluate_set(SRPredictor(q, 3, tile_size=-1), eval_set, config)["psnr"]
    tfl = evaluate_set(SRPredictor(open_exported(path), 3, tile_size=-1), eval_set, config)["psnr"]
    assert abs(tfl - fq) < 0.05, (fq, tfl)
