"""Small ONNX files the tests build (imported by the tests and by the bad-input catalogue's child processes)."""
import numpy as np
import onnx


def save_huge_window_onnx(path, side=40000):
    """An ONNX file whose fixed input window is ``side`` x ``side`` pixels (a x2 nearest Resize): a window no
    machine should be asked to pad an image to (89.4 GiB of float32 per window at 40000)."""
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, side, side])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 2 * side, 2 * side])
    node = onnx.helper.make_node("Resize", ["x", "", "s"], ["y"], mode="nearest")
    scales = onnx.numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "s")
    model = onnx.helper.make_model(onnx.helper.make_graph([node], "g", [x], [y], [scales]),
                                   opset_imports=[onnx.helper.make_opsetid("", 13)], ir_version=8)
    onnx.save(model, path)
    return path
