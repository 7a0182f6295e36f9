"""Exact float-graph rewrites of the mobile profile: only ops phone delegates run.

MindSpore's traced ONNX graph holds a few ops that NNAPI / CoreML partitions stop at
(see :data:`src.export.onnx.profiles.MOBILE_OPS` for what a mobile graph may contain):

- ``Constant`` nodes (the anchor's repeats) -> initializers; ``Unsqueeze`` of an
  initializer (the PReLU slopes, ``(C,) -> (C, 1, 1)``) -> the unsqueezed initializer;
- ``Tile(x, (1, k, 1, 1))`` (the anchor: the LR input repeated over the sub-pixels,
  ABPN / ECBSR / SESR) -> ``Concat([x] * k, axis=1)``: channel ``j`` of both is channel
  ``j % C`` of ``x``, so the DCR ``DepthToSpace`` after it gives every sub-pixel its colour;
- ``Sub(x, c)`` with a constant ``c`` (SESR's ``x - 0.5``) -> ``Add(x, -c)`` (the same
  IEEE result);
- ``Conv -> Relu -> Slice(channels 0..k)`` (ETDS drops its padding channel before the
  pixel shuffle) -> the Conv keeps only its first ``k`` filters (Relu is per element, so
  the kept channels are unchanged).

Every rewrite is exact; each returns the number of nodes it changed.
"""
import numpy as np
import onnx
from onnx import helper, numpy_helper

from src.export.onnx.onnx_graph import attr, consumers, drop_dead, producers
from src.errors import UserError


class MobileUnsupported(UserError):
    """The network has an operation the mobile profile (phone delegates' ops, fixed shapes) cannot express;
    no mobile file of it exists. A judgement of the user's model, so one line."""


def _initializers(graph):
    return {t.name: t for t in graph.initializer}


def _replace_nodes(graph, old, new_nodes):
    """Put ``new_nodes`` where ``old`` was (keeps topological order)."""
    nodes = list(graph.node)
    at = nodes.index(old)
    nodes[at:at + 1] = new_nodes
    del graph.node[:]
    graph.node.extend(nodes)


def constants_to_initializers(model):
    """``Constant`` nodes -> initializers of the same name (in place); returns how many. ValueError
    for a Constant without a tensor ``value`` attribute (e.g. ``value_float``)."""
    graph = model.graph
    constants = [n for n in graph.node if n.op_type == "Constant"]
    for node in constants:
        value = attr(node, "value")
        if value is None:
            raise ValueError(f"Constant node {node.name} has no tensor 'value' attribute")
        graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(value), node.output[0]))
        graph.node.remove(node)
    return len(constants)


def _rewrite_each(model, op_type, rewrite):
    """Call ``rewrite(graph, inits, node)`` on each ``op_type`` node of ``model`` (the node list and
    the ``{name: TensorProto}`` initializers as they were before the first call), then drop the
    nodes nothing reads any more; returns how many calls changed the graph (returned True)."""
    graph = model.graph
    inits = _initializers(graph)
    done = 0
    for node in [n for n in graph.node if n.op_type == op_type]:
        if rewrite(graph, inits, node):
            done += 1
    drop_dead(graph)
    return done


def fold_constant_unsqueeze(model):
    """``Unsqueeze`` of an initializer -> the unsqueezed initializer (named like the node output).
    The axes come from the ``axes`` attribute (opset < 13) or a constant second input (opset 13);
    an Unsqueeze with non-constant axes stays."""
    def fold(graph, inits, node):
        if node.input[0] not in inits:
            return False
        axes = attr(node, "axes")
        if axes is None and len(node.input) > 1:
            if node.input[1] not in inits:
                return False
            axes = numpy_helper.to_array(inits[node.input[1]]).tolist()
        value = numpy_helper.to_array(inits[node.input[0]])
        for axis in sorted(int(a) % (value.ndim + len(axes)) for a in axes):
            value = np.expand_dims(value, axis)
        graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
        graph.node.remove(node)
        return True
    return _rewrite_each(model, "Unsqueeze", fold)


def tile_to_concat(model):
    """``Tile(x, (1, k, 1, 1))`` -> ``Concat([x] * k, axis=1)`` (same channel order, NCHW). Raises
    ValueError for a Tile whose repeats are not a constant of that form."""
    def to_concat(graph, inits, node):
        if node.input[1] not in inits:
            raise MobileUnsupported(f"Tile {node.name} has non-constant repeats; the mobile profile cannot express it")
        repeats = numpy_helper.to_array(inits[node.input[1]]).tolist()
        if len(repeats) != 4 or repeats[0] != 1 or repeats[2:] != [1, 1]:
            raise MobileUnsupported(f"Tile {node.name} repeats {repeats}: only channel repeats (1, k, 1, 1) are mobile")
        concat = helper.make_node("Concat", [node.input[0]] * int(repeats[1]), list(node.output), axis=1,
                                  name=(node.name or node.output[0]) + "_concat")
        _replace_nodes(graph, node, [concat])
        return True
    return _rewrite_each(model, "Tile", to_concat)


def sub_constant_to_add(model):
    """``Sub(x, c)`` with an initializer ``c`` -> ``Add(x, -c)`` (``-c`` a new initializer
    ``{c}_negated``; IEEE ``x - c`` and ``x + (-c)`` are the same number)."""
    def to_add(graph, inits, node):
        if node.input[1] not in inits:
            return False
        negated = numpy_helper.from_array(-numpy_helper.to_array(inits[node.input[1]]), node.input[1] + "_negated")
        graph.initializer.append(negated)
        add = helper.make_node("Add", [node.input[0], negated.name], list(node.output),
                               name=(node.name or node.output[0]) + "_add")
        _replace_nodes(graph, node, [add])
        return True
    return _rewrite_each(model, "Sub", to_add)


def slice_to_conv_channels(model):
    """``Conv -> Relu -> Slice(axis 1, 0..k, step 1)`` -> the Conv with its first ``k`` filters
    (weight OIHW and bias cut on axis 0); the Relu then writes the Slice's output."""
    return _rewrite_each(model, "Slice", _fold_channel_slice)


def _fold_channel_slice(graph, inits, node):
    writers, users = producers(graph), consumers(graph)
    parts = [numpy_helper.to_array(inits[n]).tolist() if n in inits else None for n in node.input[1:]]
    if len(parts) < 3 or any(p is None for p in parts) or parts[2] != [1] or parts[0] != [0]:
        return False
    if len(parts) > 3 and parts[3] != [1]:
        return False
    keep = int(parts[1][0])
    relu = writers.get(node.input[0])
    if relu is None or relu.op_type != "Relu" or len(users.get(relu.output[0], [])) != 1:
        return False
    conv = writers.get(relu.input[0])
    if conv is None or conv.op_type != "Conv" or len(users.get(conv.output[0], [])) != 1 \
            or conv.input[1] not in inits:
        return False
    for index in (1, 2):
        if len(conv.input) > index and conv.input[index]:
            tensor = inits[conv.input[index]]
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor)[:keep], tensor.name))
    relu.output[0] = node.output[0]
    graph.node.remove(node)
    return True


def fixed_shape(model):
    """Drop stale intermediate shapes (rewrites change channel counts); the graph input and output keep
    the traced fixed N, C, H, W. Raises ValueError if they are not fully known."""
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) != 4 or not all(d.HasField("dim_value") for d in dims):
            raise ValueError(f"the mobile graph's {value.name} must have a fixed 4-D shape")
    del model.graph.value_info[:]
    return 0


__all__ = ["constants_to_initializers", "fold_constant_unsqueeze", "tile_to_concat", "sub_constant_to_add",
           "slice_to_conv_channels", "fixed_shape", "check_mobile_ops"]


def check_mobile_ops(model, allowed):
    """Raise ValueError naming any op of ``model`` outside ``allowed`` (op types, e.g.
    :data:`src.export.onnx.profiles.MOBILE_OPS`); then run ``onnx.checker`` (which raises its own
    ValidationError on a malformed graph). Returns 0 (a pass changes nothing)."""
    extra = sorted({n.op_type for n in model.graph.node} - set(allowed))
    if extra:
        raise MobileUnsupported(f"this network's mobile graph holds {', '.join(extra)}, which phone delegates do not "
                                "run (e.g. EDSR's mean shift and x255 scaling); export it with --target desktop "
                                "(ONNX or MindIR), or use a family with a mobile form (e.g. edsr f32b5)")
    onnx.checker.check_model(model)
    return 0
