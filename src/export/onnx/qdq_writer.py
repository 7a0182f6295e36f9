"""Write a :class:`~src.export.onnx.qdq_plan.QDQPlan` into an ONNX graph: the QuantizeLinear /
DequantizeLinear nodes and their integer initializers (in place).

- tensor mark on tensor ``t`` (prefix ``p``): the producer now writes ``p_float``, then
  ``[Clip ->] QuantizeLinear -> DequantizeLinear`` gives ``t`` back, so every reader (and a graph
  output of that name) takes the dequantized value; on a graph input the DequantizeLinear writes
  ``p_dq`` and the readers are rewired to it;
- edge mark (one reader): ``[Clip ->] QuantizeLinear -> DequantizeLinear`` just before that reader,
  which reads ``p_dq`` instead of ``t`` (a requantization when ``t`` also has a tensor mark);
- conv mark: ``DequantizeLinear(p.weight_quantized int8, per-channel scale, zero 0, axis 0)`` and
  the same for the int32 bias, just before the Conv; its float initializers go.

Node and initializer names follow ``<layer>.act_*`` (input), ``<layer>.out_*`` (output),
``<layer>.weight_*`` / ``<layer>.bias_*``. The nodes follow the ONNX QDQ format (onnxruntime docs,
"Quantize ONNX models"; QuantizeLinear / DequantizeLinear-13, per-axis for weights), which
onnxruntime fuses into integer kernels.
"""
import numpy as np
from onnx import helper

from src.export.onnx.onnx_graph import const_tensor


def _qdq_nodes(source, mark, out_name):
    """(nodes, initializers) quantizing ``source`` on ``mark.grid``, dequantized into ``out_name``."""
    p, grid = mark.prefix, mark.grid
    inits = [const_tensor(p + "_scale", np.float32(grid.scale)), const_tensor(p + "_zero_point", grid.zero_point)]
    nodes = []
    if grid.clip is not None:
        inits += [const_tensor(p + "_clip_min", np.float32(grid.clip[0])), const_tensor(p + "_clip_max", np.float32(grid.clip[1]))]
        nodes.append(helper.make_node("Clip", [source, p + "_clip_min", p + "_clip_max"], [p + "_clipped"],
                                      name=p + "_clip"))
        source = p + "_clipped"
    nodes += [helper.make_node("QuantizeLinear", [source, p + "_scale", p + "_zero_point"], [p + "_q"],
                               name=p + "_quantize"),
              helper.make_node("DequantizeLinear", [p + "_q", p + "_scale", p + "_zero_point"], [out_name],
                               name=p + "_dequantize")]
    return nodes, inits


def _weight_nodes(prefix, values, scale, zero_dtype):
    inits = [const_tensor(prefix + "_quantized", values), const_tensor(prefix + "_scale", scale),
             const_tensor(prefix + "_zero_point", np.zeros(len(scale), zero_dtype))]
    node = helper.make_node("DequantizeLinear", [prefix + "_quantized", prefix + "_scale", prefix + "_zero_point"],
                            [prefix + "_dq"], name=prefix + "_dequantize", axis=0)
    return [node], inits


def write_qdq(model, plan):
    """Insert the Q/DQ nodes of ``plan`` (:class:`~src.export.onnx.qdq_plan.QDQPlan`) into the float
    ``model`` (in place; topological order kept: graph-input marks first, edge and conv marks just
    before their reader, tensor marks just after the producer); the float weight and bias
    initializers of marked Convs go unless something else reads them. Returns the number of marks
    written. StopIteration if a tensor mark names a tensor no node writes, KeyError for an edge mark
    whose reader is not in the graph (the plan and the graph must come from the same model)."""
    graph = model.graph
    nodes = list(graph.node)
    before, after, new_inits, drop = {}, {}, [], set()
    inputs = {v.name for v in graph.input}
    keys = {id(n): n.name or n.output[0] for n in nodes}  # as the plan names readers, before any renaming
    key = lambda node: keys[id(node)]  # noqa: E731
    by_key = {key(n): n for n in nodes}
    head, renamed = [], {}
    for mark in (m for m in plan.activations if m.reader is None):
        if mark.tensor in inputs:
            new, inits = _qdq_nodes(mark.tensor, mark, mark.prefix + "_dq")
            for node in nodes:
                node.input[:] = [mark.prefix + "_dq" if i == mark.tensor else i for i in node.input]
            renamed[mark.tensor] = mark.prefix + "_dq"
            head += new
        else:
            producer = next(n for n in nodes if mark.tensor in n.output)
            producer.output[list(producer.output).index(mark.tensor)] = mark.prefix + "_float"
            new, inits = _qdq_nodes(mark.prefix + "_float", mark, mark.tensor)
            after.setdefault(key(producer), []).extend(new)
        new_inits += inits
    for mark in (m for m in plan.activations if m.reader is not None):
        reader = by_key[mark.reader]
        source = renamed.get(mark.tensor, mark.tensor)  # a graph input with a tensor mark: its dequantized value
        new, inits = _qdq_nodes(source, mark, mark.prefix + "_dq")
        reader.input[:] = [mark.prefix + "_dq" if i == source else i for i in reader.input]
        before.setdefault(mark.reader, []).extend(new)
        new_inits += inits
    for node in (n for n in nodes if n.op_type == "Conv" and n.input[1] in plan.convs):
        mark = plan.convs[node.input[1]]
        new, inits = _weight_nodes(mark.prefix + ".weight", mark.w_int, mark.w_scale, np.int8)
        drop.add(node.input[1])
        node.input[1] = mark.prefix + ".weight_dq"
        if mark.bias is not None:
            b_new, b_inits = _weight_nodes(mark.prefix + ".bias", mark.b_int, mark.b_scale, np.int32)
            new, inits = new + b_new, inits + b_inits
            drop.add(node.input[2])
            node.input[2] = mark.prefix + ".bias_dq"
        before.setdefault(key(node), []).extend(new)
        new_inits += inits
    ordered = list(head)
    for node in nodes:
        ordered += before.get(key(node), []) + [node] + after.get(key(node), [])
    del graph.node[:]
    graph.node.extend(ordered)
    still_read = {i for n in ordered for i in n.input}
    kept = [t for t in graph.initializer if t.name not in drop or t.name in still_read]
    del graph.initializer[:]
    graph.initializer.extend(kept + new_inits)
    return len(plan.activations) + len(plan.convs)


__all__ = ["write_qdq"]
