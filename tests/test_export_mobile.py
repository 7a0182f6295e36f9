"""Mobile export profile: fixed-shape ONNX of phone-delegate ops, int8 with a grid on every tensor,
ORT-Mobile partitions (NNAPI / CoreML), .ort conversion, export.py --target/--file_format ORT."""
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from mindspore import Tensor
from onnx import numpy_helper

from conftest import ROOT
from src.export.exporter import ORT_INT8_TOLERANCE, ort_matches_onnx
from src.export.onnx.mobile_check import partition_report, runs_whole
from src.export.onnx.onnx_float import save_onnx
from src.runtime.sessions import ort_session, run_onnx
from src.export.onnx.onnx_graph import consumers, producers
from src.export.onnx.ort_format import onnx_to_ort, ort_op_types
from src.export.onnx.profiles import MOBILE_OPS, build_onnx
from src.export.onnx.qdq_plan import IMAGE_GRID, IMAGE_STEP, act_grid
from src.models import create_model
from src.models.registry import to_deploy
from src.quantlib.calibrate import calibrate
from src.quantlib.quant_layers import QuantConfig, quant_layers

# the models: ABPN-M4C28 x3, ETDS-M4C32 x3, ECBSR-M4C16 x3, SESR-M5 x2 (PReLU and ReLU)
MODELS = [("abpn", "M4C28", 3, {}), ("etds", "M4C32", 3, {}), ("ecbsr", "M4C16", 3, {}),
          ("sesr", "M5", 2, {}), ("sesr", "M5", 2, {"act": "relu"})]
IDS = ["abpn", "etds", "ecbsr", "sesr_prelu", "sesr_relu"]
NOT_MOBILE = {"Shape", "Gather", "Mod", "Tile", "SpaceToDepth", "Pad", "Slice", "Sub", "Mul", "Constant", "Unsqueeze"}
RNG = np.random.default_rng(1)


def _net(model, variant, scale, options):
    return to_deploy(create_model(model, variant, scale, form="train", **options))


def _pair(model, variant, scale, options, calibrated):
    """(float net, calibrated copy or None): small random-data DBDC W8A8 calibration."""
    fp = _net(model, variant, scale, options)
    if not calibrated:
        return fp, None
    q = _net(model, variant, scale, options)
    q_params = {p.name: p for p in q.get_parameters()}
    for p in fp.get_parameters():
        q_params[p.name].set_data(p.data)
    n = fp.n_colors
    calibrate(q, [RNG.random((2, n, 16, 16)).astype(np.float32) for _ in range(2)], "dbdc", QuantConfig(8, 8))
    return fp, q


def _example(net, h=24, w=32):
    return RNG.random((1, net.n_colors, h, w)).astype(np.float32)


def _dims(value):
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value.type.tensor_type.shape.dim]


@pytest.fixture(scope="module", params=list(zip(MODELS, IDS)), ids=IDS)
def built(request, tmp_path_factory):
    """Float and int8 mobile files of one model, with their partition reports."""
    (model, variant, scale, options), name = request.param
    fp, q = _pair(model, variant, scale, options, calibrated=True)
    x = _example(fp)
    folder = tmp_path_factory.mktemp(name)
    out = {"fp": fp, "q": q, "x": x, "scale": scale, "model": model}
    for quant in ("none", "int8"):
        proto = build_onnx(fp, q, x, "mobile", quant)
        path = save_onnx(proto, str(folder / f"{quant}.onnx"))
        out[quant] = (onnx.load(path), path, partition_report(path))
    return out


def test_float_graph_is_fixed_shape_mobile_ops_and_matches_mindspore(built):
    model, path, _ = built["none"]
    ops = {n.op_type for n in model.graph.node}
    assert ops <= MOBILE_OPS and not ops & NOT_MOBILE, ops
    x, s = built["x"], built["scale"]
    assert _dims(model.graph.input[0]) == list(x.shape)
    assert _dims(model.graph.output[0]) == [1, x.shape[1], x.shape[2] * s, x.shape[3] * s]
    assert model.opset_import[0].version == 13
    ref = built["fp"](Tensor(x)).asnumpy()  # Concat anchor + DCR DepthToSpace == MindSpore's Tile + PixelShuffle
    assert np.abs(run_onnx(ort_session(path), x) - ref).max() < 1e-5
    if built["model"] == "etds":  # the padding channel's Slice is gone: the last conv keeps 27 filters
        convs = [n for n in model.graph.node if n.op_type == "Conv"]
        weights = {t.name: t for t in model.graph.initializer}
        assert list(weights[convs[-1].input[1]].dims)[0] == 27


def test_float_graph_runs_whole_on_nnapi_and_coreml_mlprogram(built):
    report = built["none"][2]
    assert runs_whole(report["NNAPI"]), report["NNAPI"]
    assert runs_whole(report["CoreML MLProgram"]), report["CoreML MLProgram"]


def test_int8_graph_runs_whole_on_nnapi(built):
    model, _, report = built["int8"]
    assert {n.op_type for n in model.graph.node} <= MOBILE_OPS
    assert runs_whole(report["NNAPI"]), report["NNAPI"]


def test_int8_graph_has_a_grid_on_every_tensor_between_ops(built):
    """Full-integer: every non-Q/DQ op reads DequantizeLinear outputs (or weights) and writes into a
    QuantizeLinear, except a Conv fused with the Relu after it; the graph input goes straight into a
    QuantizeLinear and the output comes from a DequantizeLinear."""
    model = built["int8"][0]
    graph = model.graph
    writers, readers = producers(graph), consumers(graph)
    inits = {t.name for t in graph.initializer}
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for name in node.input:
            if name and name not in inits:
                writer = writers.get(name)
                fused = node.op_type == "Relu" and writer is not None and writer.op_type == "Conv"
                assert fused or (writer is not None and writer.op_type == "DequantizeLinear"), (node.name, name)
        for name in node.output:
            users = readers.get(name, [])
            fused = node.op_type == "Conv" and [u.op_type for u in users] == ["Relu"]
            assert fused or (users and all(u.op_type == "QuantizeLinear" for u in users)), (node.name, name)
    assert all(n.op_type == "QuantizeLinear" for n in readers[graph.input[0].name])
    assert writers[graph.output[0].name].op_type == "DequantizeLinear"


def test_int8_graph_carries_the_calibrated_grids(built):
    """Each Conv input is dequantized at that layer's activation grid; its weights are int8 per channel
    at the weight quantizer's scales, its bias int32 at activation x weight scale. A conv before a
    PReLU is written in the split form (src/export/onnx/prelu_split.py): filters [W; -W] at scales [s; k s]
    (k = |a| per channel), then a 1x1 mix conv with no bias."""
    model, q = built["int8"][0], built["q"]
    graph = model.graph
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    writers = producers(graph)
    layers = dict(quant_layers(q))
    convs = [n for n in graph.node if n.op_type == "Conv" and not n.name.endswith("_split_mix")]
    assert len(convs) == len(layers)
    for conv in convs:
        w_dq = writers[conv.input[1]]
        stem = w_dq.input[0][:-len(".weight_quantized")]
        split = stem.endswith(".out_float_split")
        name = stem[:-len(".out_float_split")] if split else stem
        layer = layers[name]
        grid = act_grid(layer.act_quant)
        x_dq = writers[conv.input[0]]
        assert x_dq.op_type == "DequantizeLinear"
        assert values[x_dq.input[1]] == grid.scale and values[x_dq.input[2]] == grid.zero_point
        w_scale = layer.weight_quant.grid()[0].reshape(-1)
        assert values[w_dq.input[0]].dtype == np.int8
        scales = values[w_dq.input[1]]
        if split:
            half = len(scales) // 2
            np.testing.assert_array_equal(scales[:half], w_scale[:half])
            np.testing.assert_array_equal(values[w_dq.input[0]][half:], -values[w_dq.input[0]][:half])
        else:
            np.testing.assert_array_equal(scales, w_scale[:len(scales)])
        b_dq = writers[conv.input[2]]
        assert values[b_dq.input[0]].dtype == np.int32
        np.testing.assert_allclose(values[b_dq.input[1]], grid.scale * values[w_dq.input[1]], rtol=1e-6)


def test_int8_graph_matches_fake_quant(built):
    _, path, _ = built["int8"]
    x, q = built["x"], built["q"]
    # the int8 output is an 8-bit image (saturated to [0, 1]; ECBSR has no Clip of its own)
    diff = np.abs(run_onnx(ort_session(path), x) - np.clip(q(Tensor(x)).asnumpy(), 0.0, 1.0))
    # integer requantisation rounding and the added 8-bit steps (PReLU/Add outputs) on random input
    assert diff.max() < 0.15 and diff.mean() < 0.01, (diff.max(), diff.mean())


@pytest.mark.parametrize("quant", ["none", "int8"])
def test_ort_file_gives_the_onnx_output(built, quant, tmp_path):
    if built["model"] not in ("abpn", "sesr"):
        pytest.skip("the .ort conversion is checked on ABPN and SESR (runtime)")
    _, path, _ = built[quant]
    ort_path = onnx_to_ort(path, str(tmp_path / "ort"))
    assert ort_path.endswith(".ort")
    # the file holds the delegate graph (runtime optimisation style), not fused x86 kernels
    ops = ort_op_types(ort_path)
    assert ops and all(k.split(":")[0] == "" and k.split(":")[1] in MOBILE_OPS for k in ops), ops
    if quant == "int8":
        assert ops.get(":QuantizeLinear") and ops.get(":Conv"), ops
    assert ort_matches_onnx(ort_path, path, [built["x"]], 1.0) <= (ORT_INT8_TOLERANCE if quant == "int8" else 1e-5)


def test_desktop_profile_keeps_its_rewrites():
    fp = _net("sesr", "M5", 2, {})
    x = _example(fp, 13, 17)
    proto = build_onnx(fp, None, x, "desktop", "none")
    assert _dims(proto.graph.input[0])[2:] == ["height", "width"]
    assert "SpaceToDepth" in {n.op_type for n in proto.graph.node}  # strided sub-pixel conv with its residual


def test_build_onnx_refuses_bad_requests():
    fp = _net("abpn", "M2C8", 3, {})
    x = _example(fp)
    with pytest.raises(ValueError, match="target"):
        build_onnx(fp, None, x, "phone", "none")
    with pytest.raises(ValueError, match="q_net"):
        build_onnx(fp, None, x, "mobile", "int8")
    with pytest.raises(ValueError, match="4-D"):
        build_onnx(fp, None, x[0], "mobile", "none")


# ---- command line -------------------------------------------------------------------------------

def _run(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), "--model", "abpn", "--variant", "M2C8",
                           "--scale", "3", *args], capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_export_cli_mobile_ort_and_bad_inputs(tmp_path):
    from src.weights.checkpoint import model_meta, save_checkpoint  # pylint: disable=import-outside-toplevel
    net = create_model("abpn", "M2C8", 3)
    ckpt = str(tmp_path / "fp.ckpt")
    save_checkpoint(net, ckpt, meta=model_meta(net))
    base = ["--pre_trained", ckpt, "--output_path", str(tmp_path / "out")]
    proc = _run(*base, "--file_format", "ORT", "--input_shape", "1,3,20,28")
    assert proc.returncode == 0, proc.stderr
    assert "NNAPI 1 partition" in proc.stdout and ".ort vs .onnx" in proc.stdout
    # the converter's progress prints and INFO log line, MindSpore's ONNX deprecation WARNING: not shown
    assert "Converting" not in proc.stdout and proc.stderr.strip() == "", (proc.stdout, proc.stderr)
    path = tmp_path / "out" / "abpn_M2C8_x3.ort"
    session = ort_session(str(path))
    assert session.get_inputs()[0].shape == [1, 3, 20, 28]  # auto = mobile for ORT: fixed shape
    for extra, expected in ((["--file_format", "ORT", "--target", "desktop"], "--target mobile"),
                            (["--file_format", "ONNX", "--target", "mobile", "--input_shape", "1,3,24"], "4-D"),
                            (["--file_format", "ONNX", "--input_shape", "1,3,40000,40000"], "out of range"),
                            (["--file_format", "ONNX", "--target", "tablet"], "target"),
                            # a window no tiling can make exact (radius 5 each side), a batch the runners refuse
                            (["--file_format", "ORT", "--input_shape", "1,3,1,1"],
                             "too small for this model's receptive radius of 5 LR pixels"),
                            (["--file_format", "ONNX", "--input_shape", "4,3,24,24"], "a batch of 4")):
        proc = _run(*base, *extra)
        assert proc.returncode == 2, (extra, proc.stderr)
        lines = [l for l in proc.stderr.strip().splitlines() if "WARNING" not in l]
        assert len(lines) == 1 and expected in lines[0] and "Traceback" not in proc.stderr, (extra, proc.stderr)
    assert sorted(os.listdir(tmp_path / "out")) == ["abpn_M2C8_x3.ort"]  # nothing half-written


# ---- grid choices of the mobile int8 plan -------------------------------------------------------

def test_image_grid_covers_clip_0_1():
    """float32(1/255) x 255 exceeds 1 by 2e-8: still the image grid's 1.0 (else the output Clip
    requantizes the image-grid sum onto a second grid)."""
    assert IMAGE_GRID.covers(0.0, 1.0)
    assert not IMAGE_GRID.covers(0.0, 0.999)
    assert IMAGE_GRID.bounds() == (0.0, pytest.approx(1.0))


def _initial(model, name):
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}[name]


def test_int8_graph_image_grids_at_both_ends(built):
    """The input (RGB pixels, or a Y model's anchor) and the output sum are on the 8-bit image grid,
    the graph output is that grid's DequantizeLinear (no Clip or second rounding after the sum); a
    Y model's residual conv output has step 1/255 so the anchor + residual Add is exact."""
    model = built["int8"][0]
    graph = model.graph
    writers, readers = producers(graph), consumers(graph)
    quantize_in = readers[graph.input[0].name][0]
    assert _initial(model, quantize_in.input[1]) == IMAGE_STEP and _initial(model, quantize_in.input[2]) == 0
    out_dq = writers[graph.output[0].name]
    assert _initial(model, out_dq.input[1]) == IMAGE_STEP and _initial(model, out_dq.input[2]) == 0
    assert "Clip" not in {n.op_type for n in graph.node}
    if built["model"] == "sesr":
        last = [n for n in graph.node if n.op_type == "Conv"][-1]
        out_q = readers[last.output[0]][0]
        assert out_q.op_type == "QuantizeLinear" and _initial(model, out_q.input[1]) == IMAGE_STEP


def test_int8_graph_add_term_grid_is_narrowed_to_the_sum_grid(built):
    """SESR (PReLU): the last PReLU output, added to conv_first's output and then quantized on
    conv_last's calibrated grid [L, H], is on a grid no wider than [L - hi, H - lo] ([lo, hi]: the
    other term's grid) plus one step."""
    if built["model"] != "sesr" or "PRelu" not in {n.op_type for n in built["int8"][0].graph.node}:
        pytest.skip("the narrowed Add term is SESR's last PReLU output")
    model = built["int8"][0]
    graph = model.graph
    writers, readers = producers(graph), consumers(graph)
    prelu = [n for n in graph.node if n.op_type == "PRelu"][-1]
    term_dq = readers[readers[prelu.output[0]][0].output[0]][0]  # PRelu -> QuantizeLinear -> DequantizeLinear
    add = readers[term_dq.output[0]][0]
    assert add.op_type == "Add"
    other_dq = writers[next(i for i in add.input if i != term_dq.output[0])]

    def bounds(dq):
        scale, zero = float(_initial(model, dq.input[1])), int(_initial(model, dq.input[2]))
        return scale, scale * (0 - zero), scale * (255 - zero)
    sum_q = next(n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == add.output[0])
    grid = act_grid(dict(quant_layers(built["q"]))["conv_last"].act_quant)
    assert float(_initial(model, sum_q.input[1])) == grid.scale
    step, low, high = bounds(term_dq)
    _, o_low, o_high = bounds(other_dq)
    s_low, s_high = grid.bounds()
    assert low >= s_low - o_high - step and high <= s_high - o_low + step, (low, high, s_low - o_high, s_high - o_low)


def test_add_term_range_keeps_only_what_the_sum_grid_can_pass():
    """Add(t, o) -> a conv grid [L, H]: t beyond [L - o_hi, H - o_lo] saturates the sum for every o."""
    from types import SimpleNamespace
    from onnx import helper
    from src.export.onnx.qdq_plan import Grid, QDQPlan, add_term_range
    add = helper.make_node("Add", ["t", "o"], ["s"])
    plan = QDQPlan()
    plan.mark_tensor("o", Grid(np.float32(0.01), np.array(128, np.uint8)), "o")  # [-1.28, 1.27]
    sum_grid = Grid(np.float32(0.02), np.array(100, np.uint8))  # [-2.0, 3.1]
    state = SimpleNamespace(users={"t": [add]}, plan=plan, input_grid_of_reader=lambda name, bits=None: sum_grid)
    low, high = add_term_range("t", (-10.0, 10.0), state)
    assert low == pytest.approx(-2.0 - 1.27) and high == pytest.approx(3.1 + 1.28)
    assert add_term_range("t", (-1.0, 2.0), state) == (-1.0, 2.0)  # already inside
    state.input_grid_of_reader = lambda name, bits=None: None  # the sum feeds no calibrated conv
    assert add_term_range("t", (-10.0, 10.0), state) == (-10.0, 10.0)


def test_mobile_onnx_fidelity_wrapper_runs_through_the_predictor():
    """The onnxruntime wrapper scripts/mobile_onnx_fidelity.py runs (src.runtime.sessions.SessionNet) carries
    the model interface SRPredictor reads (it lacked receptive_radius and the script stopped before its first
    PSNR)."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    from src.runtime.sessions import SessionNet as _OrtNet  # pylint: disable=import-outside-toplevel
    from src.engine.inference import SRPredictor  # pylint: disable=import-outside-toplevel
    from src.export.onnx.onnx_float import float_onnx  # pylint: disable=import-outside-toplevel
    from src.models import create_model  # pylint: disable=import-outside-toplevel
    from src.models.registry import to_deploy  # pylint: disable=import-outside-toplevel
    net = to_deploy(create_model("abpn", "M2C8", 2, form="train"))
    x = np.random.default_rng(0).random((1, 3, 20, 24)).astype(np.float32)
    wrapped = _OrtNet(float_onnx(net, x), net)
    out = SRPredictor(wrapped, 2).forward(x)
    ref = SRPredictor(net, 2).forward(x)
    assert out.shape == (1, 3, 40, 48) and np.abs(out - ref).max() < 1e-4


def test_a_network_without_a_mobile_form_is_a_one_line_user_error():
    """EDSR-baseline's mean shift and x255 scaling (Mul/Div) are no delegate ops: the mobile profile refuses it
    as a user error (one line, exit 2), not as a defect with a traceback."""
    from src.errors import UserError  # pylint: disable=import-outside-toplevel
    from src.export.onnx.mobile_rewrites import MobileUnsupported  # pylint: disable=import-outside-toplevel
    from src.export.onnx.profiles import build_onnx  # pylint: disable=import-outside-toplevel
    from src.models import create_model  # pylint: disable=import-outside-toplevel
    net = create_model("edsr", "baseline", 2)
    x = np.random.default_rng(0).random((1, 3, 16, 16)).astype(np.float32)
    with pytest.raises(MobileUnsupported, match="--target desktop") as info:
        build_onnx(net, None, x, "mobile", "none")
    assert isinstance(info.value, UserError) and "Mul" in str(info.value)
