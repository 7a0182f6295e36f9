"""The int8 mobile graph's PReLU in the integer form every runtime computes the same way.

After the Q/DQ nodes are written, a ``Conv -> Q/DQ (y's grid [low, high]) -> PRelu(a)`` whose conv
output nothing else reads becomes, as :mod:`src.export.tflite.tflite_graph` has always written it for
TFLite and as the deployment simulation computes it (:class:`src.quantlib.deploy.QuantPReLU`):

- one Conv with ``2C`` filters ``[W; -W]`` (the same int8 integers, negated) at per-channel scales
  ``[s; k s]``, ``k = |a|`` per channel (:func:`~src.quantlib.deploy.split_factors`: the negative
  half in output units), int32 biases ``[b_q; -b_q]``, then Relu and Q/DQ on ``[0, high]``
  (uint8, scale ``high / 255``, zero point 0): ``[relu(y), relu(-k y)]``, 8 bits over each side;
- one 1x1 Conv ``2C -> C`` with int8 weights ``(1, -a_c / k)`` at per-channel scale
  ``max(1, |a_c / k|) / 127`` writing the PRelu's output (its Q/DQ, the next conv's input grid, stays).

So the mobile ONNX / ``.ort`` file computes what the int8 TFLite file and the quantized model compute
(before, onnxruntime rounded ``y`` on its one 8-bit grid and applied a float slope). The TFLite
translator's own PReLU form (:mod:`src.export.tflite.tflite_graph`, ``k = high / -low``) now serves only a
PRelu this pass leaves (no quantized conv before it, or a one-sided grid). A grid with no
negative or no positive side (zero point 0 or 255) is left as it is.
"""
import numpy as np
from onnx import helper, numpy_helper

from src.export.onnx.onnx_graph import const_tensor, consumers, drop_dead, producers
from src.quantlib.deploy import split_factors_np


def _init(graph, name):
    for t in graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    return None


def _dq_source(graph, writers, tensor):
    """(DequantizeLinear node, QuantizeLinear node) if ``tensor`` is DQ(Q(...)) of one activation, else None."""
    dq = writers.get(tensor)
    if dq is None or dq.op_type != "DequantizeLinear":
        return None
    q = writers.get(dq.input[0])
    if q is None or q.op_type != "QuantizeLinear":
        return None
    return dq, q


def _weight_dq(graph, writers, name):
    node = writers.get(name)
    if node is None or node.op_type != "DequantizeLinear":
        return None
    values, scale = _init(graph, node.input[0]), _init(graph, node.input[1])
    return None if values is None or scale is None else (node, values, scale)


def split_prelu(model):
    """Rewrite every eligible PRelu of the int8 mobile ``model`` (in place, see the module notes);
    returns how many."""
    graph = model.graph
    done = 0
    for prelu in [n for n in graph.node if n.op_type == "PRelu"]:
        if _split_one(graph, prelu):
            done += 1
    if done:
        drop_dead(graph)
        used = {i for n in graph.node for i in n.input}
        kept = [t for t in graph.initializer if t.name in used]
        del graph.initializer[:]
        graph.initializer.extend(kept)
    return done


def _split_one(graph, prelu):
    writers, users = producers(graph), consumers(graph)
    pair = _dq_source(graph, writers, prelu.input[0])
    slope = _init(graph, prelu.input[1])
    if pair is None or slope is None:
        return False
    dq, q = pair
    conv = writers.get(q.input[0])
    if conv is None or conv.op_type != "Conv" or len(conv.input) < 3 or any(
            len(users.get(t, [])) != 1 for t in (conv.output[0], q.output[0], dq.output[0])):
        return False
    weight, bias = _weight_dq(graph, writers, conv.input[1]), _weight_dq(graph, writers, conv.input[2])
    y_scale, y_zero = _init(graph, q.input[1]), _init(graph, q.input[2])
    if weight is None or bias is None or y_scale is None or y_zero is None or y_zero.dtype != np.uint8:
        return False
    step, zero = np.float32(y_scale.reshape(-1)[0]), int(y_zero.reshape(-1)[0])
    if not 0 < zero < 255:
        return False
    channels = weight[1].shape[0]
    low, high = np.float32(-zero * step), np.float32((255 - zero) * step)
    slope = np.broadcast_to(slope.reshape(-1), (channels,)).astype(np.float32)
    k = split_factors_np(slope, np.float32(high / -low))  # per channel, as the deployment model
    a = slope / k
    p = conv.output[0] + "_split"
    new_inits = [
        const_tensor(p + ".weight_quantized", np.concatenate([weight[1], -weight[1]]).astype(np.int8)),
        const_tensor(p + ".weight_scale", np.concatenate([weight[2], k * weight[2]]).astype(np.float32)),
        const_tensor(p + ".weight_zero_point", np.zeros(2 * channels, np.int8)),
        const_tensor(p + ".bias_quantized", np.concatenate([bias[1], -bias[1]]).astype(np.int32)),
        const_tensor(p + ".bias_scale", np.concatenate([bias[2], k * bias[2]]).astype(np.float32)),
        const_tensor(p + ".bias_zero_point", np.zeros(2 * channels, np.int32)),
        const_tensor(p + ".half_scale", np.float32(high / np.float32(255))),
        const_tensor(p + ".half_zero_point", np.array(0, np.uint8))]
    mix_scale = (np.maximum(np.abs(a), 1.0) / np.float32(127)).astype(np.float32)
    mix = np.zeros((channels, 2 * channels, 1, 1), np.float32)
    mix[np.arange(channels), np.arange(channels), 0, 0] = 1.0
    mix[np.arange(channels), channels + np.arange(channels), 0, 0] = -a
    mix_int = np.clip(np.floor(mix / mix_scale.reshape(-1, 1, 1, 1) + 0.5), -127, 127).astype(np.int8)
    new_inits += [const_tensor(p + ".mix_quantized", mix_int), const_tensor(p + ".mix_scale", mix_scale),
                  const_tensor(p + ".mix_zero_point", np.zeros(channels, np.int8))]
    attrs = {a_.name: helper.get_attribute_value(a_) for a_ in conv.attribute}
    nodes = [
        helper.make_node("DequantizeLinear", [p + ".weight_quantized", p + ".weight_scale", p + ".weight_zero_point"],
                         [p + ".weight_dq"], name=p + ".weight_dequantize", axis=0),
        helper.make_node("DequantizeLinear", [p + ".bias_quantized", p + ".bias_scale", p + ".bias_zero_point"],
                         [p + ".bias_dq"], name=p + ".bias_dequantize", axis=0),
        helper.make_node("Conv", [conv.input[0], p + ".weight_dq", p + ".bias_dq"], [p + "_float"], name=p, **attrs),
        helper.make_node("Relu", [p + "_float"], [p + "_relu"], name=p + "_relu"),
        helper.make_node("QuantizeLinear", [p + "_relu", p + ".half_scale", p + ".half_zero_point"], [p + "_q"],
                         name=p + "_quantize"),
        helper.make_node("DequantizeLinear", [p + "_q", p + ".half_scale", p + ".half_zero_point"], [p + "_dq"],
                         name=p + "_dequantize"),
        helper.make_node("DequantizeLinear", [p + ".mix_quantized", p + ".mix_scale", p + ".mix_zero_point"],
                         [p + ".mix_dq"], name=p + ".mix_dequantize", axis=0),
        helper.make_node("Conv", [p + "_dq", p + ".mix_dq"], [prelu.output[0]], name=p + "_mix",
                         kernel_shape=[1, 1], pads=[0, 0, 0, 0], strides=[1, 1])]
    graph.initializer.extend(new_inits)
    order = list(graph.node)
    at = order.index(prelu)
    order[at:at + 1] = nodes
    del graph.node[:]
    graph.node.extend(order)
    for node in (conv, q, dq):
        graph.node.remove(node)
    return True


__all__ = ["split_prelu"]
