"""export.py / infer.py: MindIR and ONNX (float, dynamic H/W; int8 QDQ) for every default model."""
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest

from conftest import ROOT, requires_shared, shared_dir, write_smooth_images
from src.export.mindir import export_mindir, mindir_max_diff
from src.export.onnx.onnx_float import float_onnx, max_diff, save_onnx
from src.runtime.sessions import ort_session, run_onnx
from src.export.onnx.onnx_qdq import integer_kernels, observe_output_ranges, quantize_onnx
from src.models import create_model
from src.models.registry import default_variant, to_deploy
from src.quantlib.calibrate import calibrate
from src.quantlib.quant_layers import QuantConfig
from src.weights.checkpoint import model_meta, save_checkpoint

DEFAULT_MODELS = [("abpn", 3), ("etds", 3), ("ecbsr", 2), ("sesr", 2), ("edsr", 2)]
RNG = np.random.default_rng(0)


def _net(model, scale):
    return to_deploy(create_model(model, default_variant(model), scale, form="train"))


def _inputs(n_colors, sizes=((20, 28), (13, 17))):
    return [RNG.random((1, n_colors, h, w)).astype(np.float32) for h, w in sizes]


@pytest.mark.parametrize("model,scale", DEFAULT_MODELS)
def test_onnx_float_dynamic_hw_matches_mindspore(model, scale, tmp_path):
    net = _net(model, scale)
    xs = _inputs(net.n_colors, sizes=((20, 28), (13, 17), (9, 10)))
    proto = float_onnx(net, xs[0], optimize=True)
    dims = [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim[2:]]
    assert dims == ["height", "width"] and proto.opset_import[0].version == 13
    strided = [n for n in proto.graph.node if n.op_type == "Conv"
               and [a.ints for a in n.attribute if a.name == "strides"][0] != [1, 1]]
    # SESR's 16->4 and ECBSR's 16->12 sub-pixel output convs become one strided conv
    assert len(strided) == (1 if model in ("sesr", "ecbsr") else 0)
    path = save_onnx(proto, str(tmp_path / "m.onnx"))
    onnx.checker.check_model(onnx.load(path))
    # three sizes, two of them odd: the dynamic shape really runs, and the rewrite's pad and crop are exact
    assert max_diff(ort_session(path), net, xs) < 1e-4


@pytest.mark.parametrize("scale", [2, 3])
def test_strided_subpixel_rewrite_is_exact_and_keeps_the_graph_outputs(scale):
    from src.export.onnx.onnx_float import optimized_float  # pylint: disable=import-outside-toplevel
    net = _net("sesr", scale)
    xs = _inputs(1, sizes=((12, 15), (11, 7)))
    raw = float_onnx(net, xs[0])
    opt = optimized_float(raw)
    ops_raw, ops_opt = [n.op_type for n in raw.graph.node], [n.op_type for n in opt.graph.node]
    assert "Tile" in ops_raw and "Tile" not in ops_opt  # the tiled input residual now enters on the phase grid
    assert ops_opt.count("DepthToSpace") == 1 and ops_raw.count("Conv") == ops_opt.count("Conv")
    conv = [n for n in opt.graph.node if n.op_type == "Conv"][-1]
    weight = {t.name: t for t in opt.graph.initializer}[conv.input[1]]
    assert list(weight.dims) == [scale ** 4, 16, 5 + scale - 1, 5 + scale - 1]
    out_raw, out_opt = (run_onnx(ort_session(m), xs[1]) for m in (raw, opt))
    assert out_raw.shape == out_opt.shape == (1, 1, 11 * scale, 7 * scale)
    assert np.abs(out_raw - out_opt).max() < 1e-5


@pytest.mark.parametrize("model,scale", DEFAULT_MODELS)
def test_mindir_dynamic_hw_round_trip(model, scale, tmp_path):
    net = _net(model, scale)
    path = export_mindir(net, net.n_colors, str(tmp_path / "m"))
    assert path.endswith(".mindir") and os.path.isfile(path)
    assert mindir_max_diff(path, net, _inputs(net.n_colors)) < 1e-5


def _calibrated(model, scale, bits=8):
    fp, q = _net(model, scale), _net(model, scale)
    q_params = {p.name: p for p in q.get_parameters()}
    for p in fp.get_parameters():
        q_params[p.name].set_data(p.data)
    n = fp.n_colors
    calibrate(q, [RNG.random((2, n, 16, 16)).astype(np.float32) for _ in range(2)], "dbdc", QuantConfig(bits, bits))
    return fp, q


@pytest.mark.parametrize("model,scale", [("abpn", 3), ("sesr", 2), ("etds", 3)])
def test_int8_qdq_runs_integer_kernels_and_matches_fake_quant(model, scale, tmp_path):
    fp, q = _calibrated(model, scale)
    xs = _inputs(fp.n_colors)
    path = save_onnx(quantize_onnx(float_onnx(fp, xs[0]), q, observe_output_ranges(q, xs)), str(tmp_path / "q.onnx"))
    types = {n.op_type for n in onnx.load(path).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= types
    graph = onnx.load(path).graph
    shapes = {t.name: tuple(t.dims) for t in graph.initializer}
    if model == "abpn":  # 27 output channels at x3 are padded to 28 (faster kernel), cut back by a Slice
        assert shapes["conv_up.weight_quantized"][0] == 28 and shapes["conv_last.weight_quantized"][:2] == (28, 28)
        assert "Slice" in types
    for conv in (n for n in graph.node if n.op_type == "Conv"):
        # integer convs: at least 16 output channels, a multiple of 4 (SESR's 16->4 output conv is padded)
        w = shapes[conv.input[1][:-len("_dq")] + "_quantized"]
        assert w[0] >= 16 and w[0] % 4 == 0, (conv.name, w)
    # the sub-pixel rewrite reads the LR size from the graph input, not from a dequantised feature map
    for shape in (n for n in graph.node if n.op_type == "Shape"):
        assert shape.input[0] == graph.input[0].name, shape.input
    if model == "etds":  # the pixel shuffle (and the padding channel's Slice) run on the uint8 output
        writers = {o: n for n in graph.node for o in n.output}
        d2s = next(n for n in graph.node if n.op_type == "DepthToSpace")
        assert writers[d2s.input[0]].op_type == "Slice" and writers[writers[d2s.input[0]].input[0]].op_type == "QuantizeLinear"
        assert graph.node[-1].op_type == "DequantizeLinear" and graph.node[-1].output[0] == graph.output[0].name
    kernels = integer_kernels(path)
    assert kernels.get("QLinearConv", 0) + kernels.get("ConvInteger", 0) > 0
    assert max_diff(ort_session(path), q, xs) < 0.02  # integer requantisation rounding only
    out = run_onnx(ort_session(path), xs[1])
    if model == "abpn":  # RGB: residual Add, shuffle and clamp on the 8-bit image grid
        assert "Clip" not in types and kernels.get("QLinearAdd", 0) >= 1
        assert out.min() >= 0 and out.max() <= 1
        np.testing.assert_allclose(out * 255, np.round(out * 255), atol=1e-3)
    if model == "sesr":  # Y channel: float output (it is converted back to RGB)
        assert "Clip" in types and np.abs(out * 255 - np.round(out * 255)).max() > 0.01


def test_dequantize_late_moves_dq_after_data_movement_exactly():
    from onnx import TensorProto, helper, numpy_helper  # pylint: disable=import-outside-toplevel
    from src.export.onnx.qdq_rewrites import dequantize_late  # pylint: disable=import-outside-toplevel
    inits = [numpy_helper.from_array(np.float32(0.02), "s"), numpy_helper.from_array(np.uint8(7), "z"),
             numpy_helper.from_array(np.array([0], np.int64), "st"), numpy_helper.from_array(np.array([8], np.int64), "en"),
             numpy_helper.from_array(np.array([1], np.int64), "ax")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
             helper.make_node("Slice", ["d", "st", "en", "ax"], ["sl"]),
             helper.make_node("DepthToSpace", ["sl"], ["y"], blocksize=2, mode="DCR"),
             helper.make_node("Relu", ["d"], ["side"])]  # a second reader keeps the first DQ in place
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 9, 5, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 10, 6]),
                               helper.make_tensor_value_info("side", TensorProto.FLOAT, [1, 9, 5, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = RNG.normal(0, 2, (1, 9, 5, 3)).astype(np.float32)
    before = [ort_session(model).run(None, {"x": x})]
    assert dequantize_late(model) == 0  # the DQ has two readers: nothing moves
    model.graph.node.remove(model.graph.node[-1])
    del model.graph.output[1:]
    assert dequantize_late(model) == 2
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ["QuantizeLinear", "Slice", "DepthToSpace", "DequantizeLinear"]
    np.testing.assert_array_equal(ort_session(model).run(None, {"x": x})[0], before[0][0])


def test_int8_needs_symmetric_weights_and_calibration(tmp_path):
    fp = _net("abpn", 2)
    with pytest.raises(ValueError, match="calibrated or QAT"):
        quantize_onnx(float_onnx(fp, _inputs(3)[0]), _net("abpn", 2))
    fp2, q = _net("abpn", 2), _net("abpn", 2)
    calibrate(q, [RNG.random((1, 3, 12, 12)).astype(np.float32)], "minmax",
              QuantConfig(8, 8, w_symmetric=False))
    with pytest.raises(ValueError, match="symmetric"):
        quantize_onnx(float_onnx(fp2, _inputs(3)[0]), q)


# ---- command line -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    net = create_model("abpn", "M2C8", 3)
    fp = str(root / "fp.ckpt")
    save_checkpoint(net, fp, meta=model_meta(net))
    write_smooth_images(root / "calib", 3, 96, seed=3)
    write_smooth_images(root / "photos", 2, 40, seed=4)
    return root, fp


def _run(script, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)


def _base(root, ckpt, *extra, scale="3"):
    return ["--model", "abpn", "--variant", "M2C8", "--scale", scale, "--pre_trained", ckpt,
            "--output_path", str(root / "out"), "--input_shape", "1,3,24,40", *extra]


def test_export_cli_float_onnx_and_mindir_then_infer(ckpts):
    root, ckpt = ckpts
    proc = _run("export.py", *_base(root, ckpt, "--file_format", "ONNX"))
    assert proc.returncode == 0, proc.stderr
    assert "max |diff|" in proc.stdout
    onnx_path = str(root / "out" / "abpn_M2C8_x3.onnx")
    assert os.path.isfile(onnx_path)
    proc = _run("export.py", *_base(root, ckpt, "--file_format", "MINDIR"))
    assert proc.returncode == 0, proc.stderr
    assert os.path.isfile(str(root / "out" / "abpn_M2C8_x3.mindir"))
    outs = {}
    for name, extra in (("onnx", ["--file_name", onnx_path]), ("ckpt", [])):
        proc = _run("infer.py", "--model", "abpn", "--variant", "M2C8", "--scale", "3", "--pre_trained", ckpt,
                    "--input_path", str(root / "photos"), "--output_path", str(root / name), *extra)
        assert proc.returncode == 0, proc.stderr
        import cv2  # pylint: disable=import-outside-toplevel
        outs[name] = [cv2.imread(str(root / name / f"{i}_x3.png")) for i in range(2)]
        assert all(o is not None and o.shape == (120, 120, 3) for o in outs[name])
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(outs["onnx"], outs["ckpt"])) <= 1


def test_export_cli_int8_from_calibrated_checkpoint(ckpts):
    root, ckpt = ckpts
    qckpt = str(root / "w8a8.ckpt")
    proc = _run("eval.py", "--model", "abpn", "--variant", "M2C8", "--scale", "3", "--pre_trained", ckpt,
                "--quant_method", "dbdc", "--calib_path", str(root / "calib"), "--calib_num", "4",
                "--pac_hr_patch", "48", "--save_quant_ckpt", qckpt, "--data_path", str(root / "nodata"),
                "--eval_datasets", "Samples", "--output_path", str(root / "out"))
    assert proc.returncode == 0, proc.stderr
    proc = _run("export.py", *_base(root, qckpt, "--file_format", "ONNX", "--quant", "int8"))
    assert proc.returncode == 0, proc.stderr
    assert "QLinearConv" in proc.stdout and os.path.isfile(str(root / "out" / "abpn_M2C8_x3_int8.onnx"))


@pytest.mark.parametrize("extra,scale,expected", [
    (["--file_format", "PTH"], "3", "not one of"),
    (["--file_format", "ONNX", "--input_shape", "3,24,40"], "3", "4-D"),
    (["--file_format", "ONNX", "--input_shape", "1,1,24,40"], "3", "channels"),
    (["--file_format", "AIR"], "3", "Ascend"),
    # int8 from a float checkpoint is the phone path: it calibrates first, so it needs calibration images
    (["--file_format", "ONNX", "--quant", "int8", "--calib_path", "/nonexistent"], "3", "calibration folder not found"),
    (["--file_format", "MINDIR", "--quant", "int8"], "3", "TFLITE, ORT or ONNX"),
    (["--file_format", "ONNX"], "2", "x3"),  # checkpoint for another scale
])
def test_export_cli_bad_inputs(ckpts, extra, scale, expected):
    root, ckpt = ckpts
    proc = _run("export.py", *_base(root, ckpt, *extra, scale=scale))
    assert proc.returncode == 2
    assert expected in proc.stderr and "Traceback" not in proc.stderr


def test_infer_cli_bad_inputs(ckpts, tmp_path):
    root, ckpt = ckpts
    proc = _run("infer.py", "--model", "abpn", "--variant", "M2C8", "--scale", "3", "--pre_trained", ckpt,
                "--input_path", str(tmp_path / "missing"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    proc = _run("infer.py", "--file_name", str(tmp_path / "model.tflite"), "--input_path", str(root / "photos"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_export_with_a_full_temporary_disk_names_the_temporary_folder(tmp_path):
    """MindSpore writes its ONNX trace into TMPDIR and its write names no file: a full disk there (simulated
    with a 24 KiB file size limit) is one line naming TMPDIR, not a bare 'File too large'."""
    import resource  # pylint: disable=import-outside-toplevel
    net = create_model("abpn", "M4C28", 3)  # ~170 KiB of weights: the trace is larger than the limit
    ckpt = str(tmp_path / "m.ckpt")
    save_checkpoint(net, ckpt, meta=model_meta(net))
    (tmp_path / "tmp").mkdir()
    limit = 24 * 1024

    def cap():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), "--model", "abpn", "--variant", "M4C28",
                           "--scale", "3", "--pre_trained", ckpt, "--file_format", "ONNX", "--input_shape",
                           "1,3,16,16", "--output_path", str(tmp_path / "out")], capture_output=True, text=True,
                          cwd=ROOT, timeout=600, preexec_fn=cap, env=dict(os.environ, TMPDIR=str(tmp_path / "tmp")))
    lines = [l for l in proc.stderr.splitlines() if not l.startswith("[WARNING]")]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: File too large in the temporary folder") and str(tmp_path / "tmp") in lines[0]
    assert "ulimit" in lines[0] and not os.listdir(tmp_path / "tmp")


@requires_shared
def test_int8_onnx_psnr_within_0_05_db_of_fake_quant(tmp_path):
    """Published ABPN x3, W8A8 DBDC on 20 patches of ../shared train images, Set5 (Y)."""
    from src.engine.evaluator import set_psnr as set5_psnr  # pylint: disable=import-outside-toplevel
    from src.weights.convert_cli import main as convert_main  # pylint: disable=import-outside-toplevel
    from src.runtime.runners import OnnxRunner  # pylint: disable=import-outside-toplevel
    from src.data.calib_data import batches_of, calibration_patches  # pylint: disable=import-outside-toplevel
    from src.weights.loader import load_for_inference  # pylint: disable=import-outside-toplevel
    shared = shared_dir()
    ckpt = str(tmp_path / "abpn.ckpt")
    assert convert_main(["--src", os.path.join(shared, "weights", "etds_repo_x3", "ABPN_M4C28_x3.pth"),
                         "--dst", ckpt, "--model", "abpn", "--variant", "M4C28", "--scale", "3"]) == 0
    fp, q = (load_for_inference("abpn", "M4C28", 3, ckpt)[0] for _ in range(2))
    patches = calibration_patches(os.path.join(shared, "data", "train"), 20, 3, 192, 0, 3)
    calibrate(q, batches_of(patches, 2), "dbdc", QuantConfig(8, 8))
    ranges = observe_output_ranges(q, batches_of(patches, 2))
    path = save_onnx(quantize_onnx(float_onnx(fp, patches[:1]), q, ranges), str(tmp_path / "q.onnx"))
    data = os.path.join(shared, "data")
    fake, real = set5_psnr(q, 3, data), set5_psnr(OnnxRunner(path), 3, data)
    assert fake > 33.3 and abs(real - fake) < 0.05
