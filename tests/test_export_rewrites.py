"""Exact ONNX rewrites of the export profiles on small hand-built graphs (no MindSpore network)."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from src.export.onnx import mobile_rewrites
from src.runtime.sessions import ort_session
from src.export.onnx.qdq_rewrites import pad_conv_channels

RNG = np.random.default_rng(11)


def _model(nodes, inputs, outputs, inits):
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def _qdq_conv(name, x, cin, cout, act_scale, out):
    """(nodes, initializers) of ``Conv(DQ(x_int8 weights), DQ(int32 bias))`` reading the dequantized ``x``."""
    w_scale = RNG.uniform(0.01, 0.02, cout).astype(np.float32)
    inits = [numpy_helper.from_array(RNG.integers(-127, 128, (cout, cin, 3, 3)).astype(np.int8), f"{name}.wq"),
             numpy_helper.from_array(w_scale, f"{name}.ws"),
             numpy_helper.from_array(np.zeros(cout, np.int8), f"{name}.wz"),
             numpy_helper.from_array(RNG.integers(-500, 500, cout).astype(np.int32), f"{name}.bq"),
             numpy_helper.from_array((np.float32(act_scale) * w_scale).astype(np.float32), f"{name}.bs"),
             numpy_helper.from_array(np.zeros(cout, np.int32), f"{name}.bz")]
    nodes = [helper.make_node("DequantizeLinear", [f"{name}.wq", f"{name}.ws", f"{name}.wz"], [f"{name}.w"], axis=0),
             helper.make_node("DequantizeLinear", [f"{name}.bq", f"{name}.bs", f"{name}.bz"], [f"{name}.b"], axis=0),
             helper.make_node("Conv", [x, f"{name}.w", f"{name}.b"], [out], name=name, pads=[1, 1, 1, 1])]
    return nodes, inits


def _act_qdq(name, x, scale, zero, out):
    inits = [numpy_helper.from_array(np.float32(scale), f"{name}.s"), numpy_helper.from_array(np.uint8(zero), f"{name}.z")]
    nodes = [helper.make_node("QuantizeLinear", [x, f"{name}.s", f"{name}.z"], [f"{name}.q"]),
             helper.make_node("DequantizeLinear", [f"{name}.q", f"{name}.s", f"{name}.z"], [out])]
    return nodes, inits


def test_pad_conv_channels_pads_both_chain_ends_and_keeps_the_output():
    # x -> Q/DQ -> conv1 (3 -> 5) -> Relu -> Q/DQ -> conv2 (5 -> 6) -> Q/DQ -> y: conv1 reaches conv2 (zero
    # input weights there), conv2's chain ends at the graph output (cut back by a Slice)
    parts = [_act_qdq("in", "x", 1 / 255, 0, "xd"), _qdq_conv("conv1", "xd", 3, 5, 1 / 255, "c1"),
             ([helper.make_node("Relu", ["c1"], ["r1"])], []), _act_qdq("mid", "r1", 0.05, 0, "r1d"),
             _qdq_conv("conv2", "r1d", 5, 6, 0.05, "c2"), _act_qdq("out", "c2", 0.1, 128, "y")]
    nodes = [n for p in parts for n in p[0]]
    inits = [t for p in parts for t in p[1]]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 7])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 6, 7])], inits)
    x = RNG.random((1, 3, 6, 7)).astype(np.float32)
    before = ort_session(model).run(None, {"x": x})[0]
    assert pad_conv_channels(model) == 2
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert values["conv1.wq"].shape == (16, 3, 3, 3) and values["conv2.wq"].shape == (16, 16, 3, 3)
    assert not values["conv1.wq"][5:].any() and not values["conv2.wq"][:, 5:].any()
    np.testing.assert_array_equal(values["conv1.ws"][5:], 1)
    slices = [n for n in model.graph.node if n.op_type == "Slice"]
    assert len(slices) == 1 and slices[0].output[0] == "y"
    np.testing.assert_array_equal(ort_session(model).run(None, {"x": x})[0], before)


def test_pad_conv_channels_leaves_a_float_conv_output_alone():
    nodes, inits = _qdq_conv("conv", "x", 3, 5, 1 / 255, "y")
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5, 4, 4])], inits)
    assert pad_conv_channels(model) == 0


def test_mobile_rewrites_count_only_the_nodes_they_change():
    c = numpy_helper.from_array(np.full((1, 1, 1, 1), 0.5, np.float32), "c")
    axes = numpy_helper.from_array(np.array([1, 2], np.int64), "axes")
    slope = numpy_helper.from_array(np.full(2, 0.25, np.float32), "slope")
    nodes = [helper.make_node("Sub", ["x", "c"], ["centred"]),
             helper.make_node("Sub", ["centred", "x"], ["zero"]),  # not a constant: stays a Sub
             helper.make_node("Unsqueeze", ["slope", "axes"], ["slope3"]),
             helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Unsqueeze", ["slope", "shape"], ["odd"]),  # computed axes: stays
             helper.make_node("PRelu", ["zero", "slope3"], ["y"]),
             helper.make_node("Identity", ["odd"], ["kept"])]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 3, 3]),
                    helper.make_tensor_value_info("kept", TensorProto.FLOAT, None)], [c, axes, slope])
    assert mobile_rewrites.sub_constant_to_add(model) == 1
    assert mobile_rewrites.fold_constant_unsqueeze(model) == 1
    types = [n.op_type for n in model.graph.node]
    assert types.count("Sub") == 1 and types.count("Add") == 1 and types.count("Unsqueeze") == 1
    folded = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}["slope3"]
    assert folded.shape == (2, 1, 1)
    np.testing.assert_array_equal(folded, 0.25)


def test_tile_to_concat_refuses_computed_or_spatial_repeats():
    for repeats, message in ((None, "non-constant repeats"), ([1, 2, 2, 1], "only channel repeats")):
        inits = [] if repeats is None else [numpy_helper.from_array(np.array(repeats, np.int64), "r")]
        nodes = ([helper.make_node("Shape", ["x"], ["r"])] if repeats is None else []) + [
            helper.make_node("Tile", ["x", "r"], ["y"], name="tile")]
        model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
        with pytest.raises(ValueError, match=message):
            mobile_rewrites.tile_to_concat(model)
    ok = _model([helper.make_node("Tile", ["x", "r"], ["y"], name="tile")],
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 2, 2])],
                [numpy_helper.from_array(np.array([1, 4, 1, 1], np.int64), "r")])
    x = RNG.random((1, 1, 2, 2)).astype(np.float32)
    before = ort_session(ok).run(None, {"x": x})[0]
    assert mobile_rewrites.tile_to_concat(ok) == 1
    onnx.checker.check_model(ok)
    assert [n.op_type for n in ok.graph.node] == ["Concat"]
    np.testing.assert_array_equal(ort_session(ok).run(None, {"x": x})[0], before)


@pytest.mark.parametrize("op, message", [("Conv", "Conv conv: the weight must be a constant"),
                                         ("PRelu", "PRelu prelu: the slope must be a constant")])
def test_tflite_translation_names_a_computed_weight_or_slope(op, message):
    pytest.importorskip("tensorflow", reason="TFLite export needs TensorFlow: pip install -r requirements-mobile.txt")
    from src.export.tflite.tflite_graph import tf_function  # pylint: disable=import-outside-toplevel
    nodes = [helper.make_node("Relu", ["x"], ["computed"]),
             helper.make_node(op, ["x", "computed"], ["y"], name=op.lower())]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [])
    run, _ = tf_function(model)
    with pytest.raises(ValueError, match=message):
        run.get_concrete_function()
