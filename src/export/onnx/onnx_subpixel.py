"""Sub-pixel output convolutions as strided convolutions (an exact ONNX graph rewrite).

SESR-style tails end in ``Conv(K x K, Cin -> nc*r^2) [-> Add(residual)] -> DepthToSpace(r)``.
Few output channels (4 for SESR x2) make that conv the slowest node of the graph in
onnxruntime, in float and even more in int8 (measured on SESR-M5 x2, 1x1x360x640,
this machine idle: 8.7 ms float, 5.6 ms int8 padded to 16 outputs; the strided form
below 1.5 ms int8).

The same outputs come from one strided convolution over the LR features: for LR
output pixel ``(r*Y + py, r*X + px)`` (phase ``py, px``) tap ``(ty, tx)`` of the
original kernel reads the input at ``r*Y - K//2 + py + ty``, so a kernel of size
``K + r - 1`` with stride ``r`` and pads ``(K//2, K//2 + r - 1)`` produces every phase
at once, ``r^2 * Cout`` channels on a ``ceil(H/r) x ceil(W/r)`` grid. Output channels
are ordered so that a single ``DepthToSpace(r^2)`` (DCR) yields the final HR image:
channel ``((r*py + sy) * r^2 + r*px + sx) * nc + c`` holds sub-pixel ``(sy, sx)`` of
colour ``c`` of phase ``(py, px)``. A residual added before the original
DepthToSpace (SESR adds the LR input tiled over the sub-pixels) is brought onto the
same grid by ``Pad`` (to a multiple of ``r``) ``-> SpaceToDepth(r) -> Gather`` on the
channels, and a ``Slice`` cuts the HR output back to ``r*H x r*W`` for sizes that are
not multiples of ``r``. Every output is the same sum of the same products as before
(in int8 the same integer weights, per-channel scales and int32 biases), so the
rewrite is exact up to float summation order.

It is applied where it pays: output channels fewer than ``max_out_channels`` (16).
"""
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from src.export.onnx.onnx_graph import attr, constant_values, consumers, drop_dead, producers

MAX_OUT_CHANNELS = 16


@dataclass
class _SubpixelTail:
    """One matched ``Conv [-> Q/DQ] [-> Add(residual)] -> DepthToSpace(r)`` tail: the Conv, its
    weight kind ('float' | 'int8'), weight (Cout, Cin, K, K) and bias (Cout,) arrays (integer ones
    for 'int8', read through ``w_dq`` / ``b_dq``), the per-tensor Q/DQ nodes on its output, the
    residual ``add`` with its other input ``residual`` and that input's ``tile`` (or None), and the
    ``d2s`` node with its block size ``r``."""
    conv: object
    kind: str
    weight: np.ndarray
    bias: np.ndarray
    w_dq: object
    b_dq: object
    qdq: list
    add: object
    residual: str
    tile: object
    d2s: object
    r: int

    @property
    def cout(self):
        return self.weight.shape[0]


def _single_user(users, name):
    readers = users.get(name, [])
    return readers[0] if len(readers) == 1 else None


def _phase_weight(w, r):
    """(r^2*Cout, Cin, Kh+r-1, Kw+r-1) strided kernel of a stride-1 kernel ``w`` and the
    source output channel of each new channel."""
    cout, cin, kh, kw = w.shape
    nc = cout // (r * r)
    out = np.zeros((r * r * cout, cin, kh + r - 1, kw + r - 1), w.dtype)
    source = np.zeros(r * r * cout, np.int64)
    for py in range(r):
        for px in range(r):
            for sy in range(r):
                for sx in range(r):
                    for c in range(nc):
                        k = ((r * py + sy) * r * r + r * px + sx) * nc + c
                        co = (sy * r + sx) * nc + c
                        source[k] = co
                        out[k, :, py:py + kh, px:px + kw] = w[co]
    return out, source


def _residual_index(cout, r, channels_t, source):
    """Gather index on SpaceToDepth(r) of a residual with ``channels_t`` channels (tiled over
    ``cout``): new channel k reads phase (py, px) of residual channel source[k] % channels_t."""
    nc = cout // (r * r)
    index = np.zeros(len(source), np.int64)
    for k, co in enumerate(source):
        b1, b2 = (k // nc) // (r * r), (k // nc) % (r * r)
        py, px = b1 // r, b2 // r
        index[k] = (py * r + px) * channels_t + co % channels_t
    return index


def _conv_parts(graph, conv, writers, inits):
    """(kind, weight array, bias array or None, weight DQ node, bias DQ node) of a Conv whose weight is a
    float initializer ('float') or a per-channel DequantizeLinear of one ('int8'); None otherwise."""
    w_name = conv.input[1]
    b_name = conv.input[2] if len(conv.input) > 2 and conv.input[2] else None
    if w_name in inits:
        bias = numpy_helper.to_array(inits[b_name]) if b_name in inits else None
        if b_name and bias is None:
            return None
        return "float", numpy_helper.to_array(inits[w_name]), bias, None, None
    w_dq = writers.get(w_name)
    if w_dq is None or w_dq.op_type != "DequantizeLinear" or w_dq.input[0] not in inits:
        return None
    b_dq = writers.get(b_name) if b_name else None
    if b_name and (b_dq is None or b_dq.op_type != "DequantizeLinear" or b_dq.input[0] not in inits):
        return None
    bias = numpy_helper.to_array(inits[b_dq.input[0]]) if b_dq is not None else None
    return "int8", numpy_helper.to_array(inits[w_dq.input[0]]), bias, w_dq, b_dq


def _is_plain_same_conv(conv, w):
    kh, kw = w.shape[2:]
    return (kh % 2 == 1 and kw % 2 == 1 and attr(conv, "group", 1) == 1
            and list(attr(conv, "strides", [1, 1])) == [1, 1] and list(attr(conv, "dilations", [1, 1])) == [1, 1]
            and list(attr(conv, "pads", [0, 0, 0, 0])) == [kh // 2, kw // 2, kh // 2, kw // 2]
            and attr(conv, "auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"))


def strided_subpixel_convs(model, max_out_channels=MAX_OUT_CHANNELS):
    """Rewrite every matching sub-pixel tail of ``model`` (an NCHW ONNX graph, float or int8 QDQ)
    in place; returns the number rewritten. A tail matches when its Conv is a stride-1 "same" conv
    with odd kernel height and width, group 1, fewer than ``max_out_channels`` outputs (a multiple of
    ``r^2``), a float or per-channel DequantizeLinear weight, and a DCR ``DepthToSpace(r)``, r >= 2.
    The graph's ``value_info`` is dropped and ``onnx.checker`` run after a rewrite (its
    ValidationError passes through)."""
    graph = model.graph
    channels = _channel_dims(model)
    done = 0
    while True:
        match = _find(graph, max_out_channels, channels)
        if match is None:
            break
        _rewrite(graph, match)
        drop_dead(graph)  # the replaced conv, its Q/DQ, Add and Tile
        done += 1
    if done:
        del graph.value_info[:]
        onnx.checker.check_model(model)
    return done


def _channel_dims(model):
    """{tensor name: channel count (dim 1) where shape inference knows it}."""
    inferred = onnx.shape_inference.infer_shapes(model)
    dims = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        shape = value.type.tensor_type.shape.dim
        if len(shape) == 4 and shape[1].HasField("dim_value"):
            dims[value.name] = shape[1].dim_value
    return dims


def _find(graph, max_out_channels, channels):
    inits = {t.name: t for t in graph.initializer}
    writers, users = producers(graph), consumers(graph)
    for conv in graph.node:
        if conv.op_type != "Conv":
            continue
        parts = _conv_parts(graph, conv, writers, inits)
        if parts is None or parts[1].ndim != 4 or not _is_plain_same_conv(conv, parts[1]):
            continue
        cout = parts[1].shape[0]
        if cout >= max_out_channels:
            continue
        name, qdq = conv.output[0], []
        while True:  # per-tensor Q/DQ on the conv output (int8 graphs)
            user = _single_user(users, name)
            if user is None or user.op_type not in ("QuantizeLinear", "DequantizeLinear") or user.input[0] != name:
                break
            scale = constant_values(graph, user.input[1])
            if scale is None or scale.size != 1:
                break
            qdq.append(user)
            name = user.output[0]
        user = _single_user(users, name)
        add, residual, tile = None, None, None
        if user is not None and user.op_type == "Add":
            add = user
            residual = add.input[1] if add.input[0] == name else add.input[0]
            tile = writers.get(residual)
            tile = tile if tile is not None and tile.op_type == "Tile" else None
            if tile is None and channels.get(residual) != cout:
                continue  # a residual broadcast over channels (or of unknown shape) is not handled
            user = _single_user(users, add.output[0])
        if user is None or user.op_type != "DepthToSpace" or attr(user, "mode", b"DCR") not in (b"DCR", "DCR"):
            continue
        r = int(attr(user, "blocksize"))
        if r < 2 or cout % (r * r):
            continue
        return _SubpixelTail(conv, *parts, qdq, add, residual, tile, user, r)
    return None


def _rewrite(graph, tail):
    """Replace the sub-pixel ``tail`` of ``graph`` (in place): the strided conv and its Q/DQ on the
    phase grid, the LR size, the residual on the phase grid, one ``DepthToSpace(r^2)`` and the crop,
    written where the old DepthToSpace was (the old nodes are left for :func:`drop_dead`)."""
    stem = tail.conv.name or tail.conv.output[0]
    new_w, source = _phase_weight(tail.weight, tail.r)
    nodes, new_inits, conv_inputs = _strided_conv_inputs(graph, tail, stem + "_strided", new_w, source)
    name = _strided_conv_nodes(tail, stem, conv_inputs, nodes)
    new_inits += _index_constants(stem, tail.r)
    source_t, channels_t = _residual_source(graph, tail)
    # H and W of the LR input of the conv, for the final crop and the residual's padding. The residual
    # has them too and is read from its source (e.g. the graph input): the conv input of an int8 graph
    # is a channels-last integer tensor inside onnxruntime, and reading its shape there costs a
    # transpose and a dequantisation of the whole feature map (measured on SESR x2 int8).
    nodes += [helper.make_node("Shape", [source_t or tail.conv.input[0]], [stem + "_shape"], name=stem + "_shape"),
              helper.make_node("Slice", [stem + "_shape", stem + "_i2", stem + "_i4"], [stem + "_hw"],
                               name=stem + "_hw")]
    if tail.add is not None:
        index = _residual_index(tail.cout, tail.r, channels_t, source)
        new_inits += [numpy_helper.from_array(index, stem + "_residual_index"),
                      numpy_helper.from_array(np.zeros(6, np.int64), stem + "_zeros6")]
        nodes += _residual_nodes(stem, tail.r, source_t, name)
        name = stem + "_sum"
    nodes += _output_nodes(stem, tail.r, name, tail.d2s.output[0])
    position = list(graph.node).index(tail.d2s)
    graph.node.remove(tail.d2s)
    for offset, node in enumerate(nodes):
        graph.node.insert(position + offset, node)
    graph.initializer.extend(new_inits)


def _strided_conv_inputs(graph, tail, base, new_w, source):
    """(DequantizeLinear nodes, initializers, Conv inputs) of the strided conv named ``base``: its
    weight ``new_w`` and the bias reordered by ``source``, as float initializers or, in an int8
    graph, as integer initializers read through per-channel DequantizeLinear nodes whose scales and
    zero points are reordered the same way (the weight's axis kept)."""
    nodes, new_inits = [], []
    if tail.kind == "float":
        w_in, b_in = base + ".weight", base + ".bias"
        new_inits.append(numpy_helper.from_array(new_w, w_in))
        if tail.bias is not None:
            new_inits.append(numpy_helper.from_array(tail.bias[source].astype(tail.bias.dtype), b_in))
    else:
        w_in, b_in = base + ".weight_dq", base + ".bias_dq"
        for tag, dq, values in (("weight", tail.w_dq, new_w),
                                ("bias", tail.b_dq, None if tail.bias is None else tail.bias[source])):
            if dq is None:
                continue
            new_inits.append(numpy_helper.from_array(np.ascontiguousarray(values), f"{base}.{tag}_quantized"))
            for idx, part in ((1, "scale"), (2, "zero_point")):
                per = constant_values(graph, dq.input[idx]) if len(dq.input) > idx and dq.input[idx] else None
                if per is None:  # optional zero point: zeros of the quantized type
                    per = np.zeros(tail.cout, values.dtype)
                per = per[source] if per.size == tail.cout else per
                new_inits.append(numpy_helper.from_array(np.ascontiguousarray(per), f"{base}.{tag}_{part}"))
            nodes.append(helper.make_node("DequantizeLinear", [f"{base}.{tag}_quantized", f"{base}.{tag}_scale",
                                                               f"{base}.{tag}_zero_point"], [f"{base}.{tag}_dq"],
                                          name=f"{base}.{tag}_dequantize", axis=attr(dq, "axis", 1)))
    return nodes, new_inits, [tail.conv.input[0], w_in] + ([b_in] if tail.bias is not None else [])


def _strided_conv_nodes(tail, stem, conv_inputs, nodes):
    """Append the stride-``r`` Conv (kernel ``K + r - 1``, pads ``(K//2, K//2 + r - 1)``) and the
    original per-tensor Q/DQ nodes, now on its phase-grid output, to ``nodes``; returns the name of
    the last tensor written."""
    kh, kw = tail.weight.shape[2:]
    r = tail.r
    nodes.append(helper.make_node("Conv", conv_inputs, [stem + "_strided_out"], name=stem + "_strided_subpixel",
                                  kernel_shape=[kh + r - 1, kw + r - 1], strides=[r, r],
                                  pads=[kh // 2, kw // 2, kh // 2 + r - 1, kw // 2 + r - 1]))
    name = stem + "_strided_out"
    for node in tail.qdq:  # the same per-tensor Q/DQ, now on the phase grid
        nodes.append(helper.make_node(node.op_type, [name] + list(node.input[1:]), [node.output[0] + "_phase"],
                                      name=node.name + "_phase"))
        name = node.output[0] + "_phase"
    return name


def _index_constants(stem, r):
    """int64 initializers of the size arithmetic: 2 and 4 (the H, W slice of a shape), ``r``, the
    H/W axes (2, 3) and the crop start (0, 0)."""
    return [numpy_helper.from_array(np.array([2], np.int64), stem + "_i2"),
            numpy_helper.from_array(np.array([4], np.int64), stem + "_i4"),
            numpy_helper.from_array(np.array([r], np.int64), stem + "_r"),
            numpy_helper.from_array(np.array([2, 3], np.int64), stem + "_axes_hw"),
            numpy_helper.from_array(np.array([0, 0], np.int64), stem + "_zeros2")]


def _residual_source(graph, tail):
    """(tensor, channels) of the residual to bring onto the phase grid: the input of its ``Tile``
    when the Tile repeats whole channels (``(1, k, 1, 1)`` with ``k`` dividing the conv's output
    channels), else the residual itself with the conv's channel count; (None, Cout) without Add."""
    source_t, channels_t = None, tail.cout
    if tail.add is not None:
        source_t = tail.residual
        if tail.tile is not None:
            repeats = constant_values(graph, tail.tile.input[1])
            if repeats is not None and list(repeats[[0, 2, 3]]) == [1, 1, 1] and tail.cout % int(repeats[1]) == 0:
                source_t, channels_t = tail.tile.input[0], tail.cout // int(repeats[1])
    return source_t, channels_t


def _residual_nodes(stem, r, source_t, name):
    """Nodes adding the residual ``source_t`` (N, C, H, W) to the phase-grid tensor ``name``: H and W
    padded up to multiples of ``r``, ``SpaceToDepth(r)``, the channel ``Gather`` by
    ``{stem}_residual_index`` and the ``Add`` writing ``{stem}_sum``."""
    return [
        helper.make_node("Mod", [stem + "_hw", stem + "_r"], [stem + "_hw_mod"], name=stem + "_hw_mod"),
        helper.make_node("Sub", [stem + "_r", stem + "_hw_mod"], [stem + "_pad_r"], name=stem + "_pad_r"),
        helper.make_node("Mod", [stem + "_pad_r", stem + "_r"], [stem + "_pad_hw"], name=stem + "_pad_hw"),
        helper.make_node("Concat", [stem + "_zeros6", stem + "_pad_hw"], [stem + "_pads"], axis=0,
                         name=stem + "_pads"),
        helper.make_node("Pad", [source_t, stem + "_pads"], [stem + "_residual_padded"],
                         name=stem + "_residual_pad"),
        helper.make_node("SpaceToDepth", [stem + "_residual_padded"], [stem + "_residual_s2d"], blocksize=r,
                         name=stem + "_residual_s2d"),
        helper.make_node("Gather", [stem + "_residual_s2d", stem + "_residual_index"],
                         [stem + "_residual_phase"], axis=1, name=stem + "_residual_gather"),
        helper.make_node("Add", [name, stem + "_residual_phase"], [stem + "_sum"], name=stem + "_residual_add")]


def _output_nodes(stem, r, name, output):
    """``DepthToSpace(r^2, DCR)`` of the phase-grid tensor ``name`` and the ``Slice`` cropping it to
    ``r*H x r*W`` into ``output`` (the old DepthToSpace's output name)."""
    return [
        helper.make_node("DepthToSpace", [name], [stem + "_hr"], blocksize=r * r, mode="DCR",
                         name=stem + "_depth_to_space"),
        helper.make_node("Mul", [stem + "_hw", stem + "_r"], [stem + "_hr_hw"], name=stem + "_hr_hw"),
        helper.make_node("Slice", [stem + "_hr", stem + "_zeros2", stem + "_hr_hw", stem + "_axes_hw"],
                         [output], name=stem + "_crop")]


__all__ = ["strided_subpixel_convs", "MAX_OUT_CHANNELS"]
