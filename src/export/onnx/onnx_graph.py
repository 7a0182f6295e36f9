"""Small read/write helpers over an ONNX GraphProto, shared by the export rewrites.

Names are ONNX tensor names (``NodeProto.input`` / ``output``, initializer names); nothing here
looks at shapes or layouts. Follows the ONNX IR (onnx/docs/IR.md): a graph's nodes are in
topological order and every tensor has one writer.
"""
import numpy as np
from onnx import helper, numpy_helper


def consumers(graph):
    """{tensor name: [NodeProto reading it, in graph order]} over every node input of ``graph``
    (an optional input left empty is listed under ``""``)."""
    out = {}
    for node in graph.node:
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


def producers(graph):
    """{tensor name: the NodeProto writing it} (graph inputs and initializers have none)."""
    return {o: n for n in graph.node for o in n.output}


def attr(node, name, default=None):
    """Value of the attribute ``name`` of ``node`` (``onnx.helper.get_attribute_value``: int, float,
    bytes for strings, list, TensorProto), or ``default`` when the node does not set it."""
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def constant_values(graph, name):
    """numpy value of ``name`` if it is an initializer or a ``Constant`` node's output (its dtype and
    shape as stored), else None."""
    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(attr(node, "value"))
    return None


def is_unit_clip(graph, node):
    """True if ``node`` is ``Clip(x, 0, 1)`` with constant bounds (an image model's final clamp)."""
    if node is None or node.op_type != "Clip" or len(node.input) < 3:
        return False
    bounds = [constant_values(graph, name) for name in node.input[1:3]]
    return all(b is not None and b.size == 1 for b in bounds) and (float(bounds[0]), float(bounds[1])) == (0.0, 1.0)


def const_tensor(name, array):
    """An initializer TensorProto named ``name`` holding ``array`` (its numpy dtype kept)."""
    return numpy_helper.from_array(np.asarray(array), name)


def drop_dead(graph):
    """Remove (in place) the nodes and initializers no graph output depends on; node order is kept.
    Graph inputs stay even when nothing reads them."""
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    keep.reverse()
    del graph.node[:]
    graph.node.extend(keep)
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
