"""Exact rewrites of an int8 QDQ ONNX graph (in place), used as passes by the export profiles
(:mod:`src.export.onnx.passes`): the x86 speed-ups of the desktop profile and the clean-ups both use.

- :func:`drop_requantization`: ``DequantizeLinear -> QuantizeLinear`` on the same grid goes;
- :func:`pad_conv_channels` (desktop): int8 Convs padded to >= 16 and a multiple of 4 output
  channels with zero filters (onnxruntime's integer convolution is slow otherwise: SESR's
  16->4 5x5 output conv 14.0 ms int8 vs 11.4 ms float at 360x640, padded to 16->16 7.0 ms);
- :func:`dequantize_late` (desktop): per-tensor DequantizeLinear moved past data-movement ops;
- :func:`image_grid_output` (desktop, RGB): the residual sum of an image model on the 8-bit
  image grid (the final Clip becomes uint8 saturation);
- :func:`drop_saturated_clips`: a Clip whose input grid lies inside its bounds (mobile).

The graphs are in the ONNX QDQ format (onnxruntime docs, "Quantize ONNX models"), NCHW; every
rewrite keeps the integers each quantized tensor holds, so onnxruntime's integer kernels give the
same outputs (or, for :func:`image_grid_output`, at most one 8-bit image level apart).
"""
import numpy as np
import onnx
from onnx import helper, numpy_helper

from src.export.onnx.onnx_graph import attr, const_tensor, constant_values, consumers, drop_dead, is_unit_clip, producers
from src.export.onnx.qdq_plan import DATA_MOVEMENT_OPS, IMAGE_STEP, Grid

MIN_INT8_OUT_CHANNELS = 16


def drop_requantization(model):
    """Remove ``DequantizeLinear -> QuantizeLinear`` pairs with the same scale and zero point (the
    QuantizeLinear's readers take the DequantizeLinear's integer input), in place; the
    DequantizeLinear nodes nobody reads any more go too. Returns the number of pairs removed."""
    graph = model.graph
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    writers = producers(graph)
    rename, dropped = {}, []
    for node in graph.node:
        if node.op_type != "QuantizeLinear":
            continue
        dq = writers.get(node.input[0])
        if dq is None or dq.op_type != "DequantizeLinear" or len(dq.input) < 3 or len(node.input) < 3:
            continue
        same = all(a in values and b in values and values[a].dtype == values[b].dtype
                   and np.array_equal(values[a], values[b]) for a, b in zip(dq.input[1:3], node.input[1:3]))
        if same:
            rename[node.output[0]] = dq.input[0]
            dropped.append(node)
    for node in dropped:
        graph.node.remove(node)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    drop_dead(graph)  # the DequantizeLinear nodes nobody reads any more
    return len(dropped)


def pad_conv_channels(model, multiple=4, min_channels=MIN_INT8_OUT_CHANNELS):
    """Pad the output channels of int8 Convs to a multiple of ``multiple``, and to at least
    ``min_channels`` (in place); returns the number of Convs padded.

    onnxruntime's integer convolution is about twice as slow with 27 output channels
    (ABPN at x3) as with 28. A Conv whose output reaches exactly one other Conv
    through per-tensor element-wise ops only (Relu, Q/DQ) gets zero filters (bias 0,
    weight scale 1) appended, and the next Conv zero input weights for them, so
    the result is unchanged: the extra channels are exactly 0 and are ignored.
    A chain that ends elsewhere (the last Conv's quantized output feeding the
    residual Add) is padded too and cut back with a Slice after its DequantizeLinear.
    Only Convs whose weight is a ``DequantizeLinear`` of an initializer (OIHW, per-channel
    scale and zero point on axis 0) and ``group`` 1 are padded; ``onnx.checker`` runs on a
    changed graph (its ValidationError passes through).
    """
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    readers = consumers(graph)
    writers = producers(graph)
    padded, slices = 0, []
    for conv in [n for n in graph.node if n.op_type == "Conv"]:
        plan = _padding_plan(conv, inits, readers, writers, multiple, min_channels)
        if plan is None:
            continue
        w_dq, w, extra, name, nxt_dq = plan
        _pad_output_channels(conv, w_dq, w, extra, inits, writers)
        if nxt_dq is not None:
            w_next = numpy_helper.to_array(inits[nxt_dq.input[0]])
            _set_initializer(inits, nxt_dq.input[0], np.concatenate(
                [w_next, np.zeros((w_next.shape[0], extra) + w_next.shape[2:], w_next.dtype)], axis=1))
        else:  # the chain ends elsewhere (e.g. the residual Add): drop the extra channels there
            slices.append((name, w.shape[0]))
        padded += 1
    _slice_channels_back(graph, writers, slices)
    if padded:
        del graph.value_info[:]
        onnx.checker.check_model(model)
    return padded


def _set_initializer(inits, name, array):
    inits[name].CopyFrom(numpy_helper.from_array(array, name))


def _padding_plan(conv, inits, readers, writers, multiple, min_channels):
    """(weight DequantizeLinear, int8 weight (Cout, Cin, K, K), channels to add, last tensor of the
    chain, the next Conv's weight DequantizeLinear or None) for a ``conv`` that
    :func:`pad_conv_channels` pads; None for one it leaves alone."""
    w_dq = writers.get(conv.input[1])
    if w_dq is None or w_dq.op_type != "DequantizeLinear" or w_dq.input[0] not in inits:
        return None
    w = numpy_helper.to_array(inits[w_dq.input[0]])
    extra = max(min_channels, w.shape[0] + (-w.shape[0]) % multiple) - w.shape[0]
    if extra == 0 or attr(conv, "group", 1) != 1:
        return None
    name, nxt = _element_wise_chain(conv, readers)
    nxt_dq = writers.get(nxt.input[1]) if nxt is not None else None
    if nxt is not None and (nxt_dq is None or nxt_dq.op_type != "DequantizeLinear"
                            or nxt_dq.input[0] not in inits or attr(nxt, "group", 1) != 1):
        return None
    if nxt is None and name == conv.output[0]:
        return None  # a float Conv output: nothing gained
    return w_dq, w, extra, name, nxt_dq


def _element_wise_chain(conv, readers):
    """(last tensor, next Conv or None) of the single chain of Relu / QuantizeLinear /
    DequantizeLinear nodes that follows ``conv``'s output (each read by exactly one node)."""
    name = conv.output[0]
    while True:
        users = readers.get(name, [])
        if len(users) != 1:
            return name, None
        user = users[0]
        if user.op_type == "Conv" and user.input[0] == name:
            return name, user
        if user.op_type not in ("Relu", "QuantizeLinear", "DequantizeLinear") or user.input[0] != name:
            return name, None
        name = user.output[0]


def _pad_output_channels(conv, w_dq, w, extra, inits, writers):
    """Append ``extra`` zero filters to ``conv``: int8 weight 0, scale 1, zero point 0; a quantized
    bias gets value 0 on its grid (scale = activation scale x weight scale 1), a float bias 0."""
    w_scale = numpy_helper.to_array(inits[w_dq.input[1]])
    _set_initializer(inits, w_dq.input[0], np.concatenate([w, np.zeros((extra,) + w.shape[1:], w.dtype)]))
    _set_initializer(inits, w_dq.input[1], np.concatenate([w_scale, np.ones(extra, np.float32)]))
    zp = numpy_helper.to_array(inits[w_dq.input[2]])
    _set_initializer(inits, w_dq.input[2], np.concatenate([zp, np.zeros(extra, zp.dtype)]))
    if len(conv.input) > 2 and conv.input[2]:
        b_dq = writers.get(conv.input[2])
        if b_dq is not None and b_dq.op_type == "DequantizeLinear":
            act_scale = float(numpy_helper.to_array(inits[b_dq.input[1]])[0] / w_scale[0])
            for idx, fill in ((0, 0), (1, act_scale), (2, 0)):  # bias scale = activation x weight scale
                arr = numpy_helper.to_array(inits[b_dq.input[idx]])
                _set_initializer(inits, b_dq.input[idx], np.concatenate([arr, np.full(extra, fill, arr.dtype)]))
        else:
            arr = numpy_helper.to_array(inits[conv.input[2]])
            _set_initializer(inits, conv.input[2], np.concatenate([arr, np.zeros(extra, arr.dtype)]))


def _slice_channels_back(graph, writers, slices):
    """For each (tensor, channels) of ``slices``: its writer now writes ``{tensor}_padded`` and a
    ``Slice`` (axis 1, 0..channels) after it writes ``tensor`` again."""
    for name, channels in slices:
        last = writers[name]
        last.output[0] = name + "_padded"
        consts = [numpy_helper.from_array(np.array([v], np.int64), f"{name}_slice_{k}")
                  for k, v in (("starts", 0), ("ends", channels), ("axes", 1))]
        graph.initializer.extend(consts)
        index = list(graph.node).index(last) + 1
        graph.node.insert(index, helper.make_node("Slice", [name + "_padded"] + [c.name for c in consts], [name],
                                                  name=f"{name}_slice"))


def dequantize_late(model):
    """Move per-tensor ``DequantizeLinear`` nodes after the data-movement ops that read them, so those
    ops run on the 8-bit tensor (exact). The pixel shuffle on the HR output is the largest fixed cost
    of an int8 SR model: on ETDS-M4C32 x3 at 360x640 it takes 18 ms of a 40 ms int8 run in float,
    and moving it before the dequantisation took the file to 28.5 ms. Returns the number of moves."""
    graph = model.graph
    moved = 0
    while True:
        users = consumers(graph)
        outputs = {o.name for o in graph.output}
        for dq in graph.node:
            if dq.op_type != "DequantizeLinear" or dq.output[0] in outputs:
                continue
            scale = constant_values(graph, dq.input[1])
            readers = users.get(dq.output[0], [])
            if scale is None or scale.size != 1 or len(readers) != 1:
                continue
            op = readers[0]
            if op.op_type not in DATA_MOVEMENT_OPS or op.input[0] != dq.output[0]:
                continue
            quantized, result = op.output[0] + "_quantized", op.output[0]
            op.input[0], op.output[0] = dq.input[0], quantized
            dq.input[0], dq.output[0] = quantized, result
            nodes = list(graph.node)
            nodes.remove(dq)
            nodes.insert(nodes.index(op) + 1, dq)
            del graph.node[:]
            graph.node.extend(nodes)
            moved += 1
            break
        else:
            return moved


def image_grid_output(model):
    """Put the output of a model that ends in ``Add(DequantizeLinear(conv), residual) -> data movement
    -> Clip(0, 1)`` on the 8-bit image grid (scale 1/255, zero point 0): the residual and the sum are
    quantized there, so onnxruntime runs the Add as a QLinearAdd, the pixel shuffle after it on uint8
    (with :func:`dequantize_late`), and uint8 saturation replaces the Clip. The output then differs
    from the fake-quant model by at most one image level, the rounding any 8-bit image writer applies
    (measured on ABPN x3: see README). Returns True if the graph was changed."""
    graph = model.graph
    if len(graph.output) != 1:
        return False
    writers, users = producers(graph), consumers(graph)
    clip = writers.get(graph.output[0].name)
    if not is_unit_clip(graph, clip):
        return False
    node = writers.get(clip.input[0])
    while node is not None and node.op_type in DATA_MOVEMENT_OPS and len(users.get(node.output[0], [])) == 1:
        node = writers.get(node.input[0])
    if node is None or node.op_type != "Add" or len(users.get(node.output[0], [])) != 1:
        return False
    add = node
    sides = [writers.get(name) for name in add.input]
    quantized = [s is not None and s.op_type == "DequantizeLinear"
                 and getattr(constant_values(graph, s.input[1]), "size", 0) == 1 for s in sides]
    if quantized.count(True) != 1:
        return False
    res = quantized.index(False)
    residual, total = add.input[res], add.output[0]
    p = total + "_image"
    graph.initializer.extend([const_tensor(p + "_scale", IMAGE_STEP), const_tensor(p + "_zero_point", np.uint8(0))])
    grid = [p + "_scale", p + "_zero_point"]
    new = [helper.make_node("QuantizeLinear", [residual] + grid, [p + "_residual_q"], name=p + "_residual_quantize"),
           helper.make_node("DequantizeLinear", [p + "_residual_q"] + grid, [p + "_residual"],
                            name=p + "_residual_dequantize"),
           helper.make_node("QuantizeLinear", [p + "_sum"] + grid, [p + "_q"], name=p + "_quantize"),
           helper.make_node("DequantizeLinear", [p + "_q"] + grid, [total], name=p + "_dequantize")]
    add.input[res], add.output[0] = p + "_residual", p + "_sum"
    nodes = list(graph.node)
    at = nodes.index(add)
    nodes[at:at + 1] = new[:2] + [add] + new[2:]
    last = new[3] if clip.input[0] == total else writers[clip.input[0]]
    last.output[0] = clip.output[0]  # values already in [0, 1]: the Clip goes
    nodes.remove(clip)
    del graph.node[:]
    graph.node.extend(nodes)
    return True



def drop_saturated_clips(model):
    """Remove ``Clip(lo, hi)`` nodes whose input is a per-tensor ``DequantizeLinear`` whose whole grid
    lies in [lo, hi] (the Clip is the identity there); returns the number removed."""
    graph = model.graph
    writers = producers(graph)
    outputs = {o.name for o in graph.output}
    removed = 0
    for clip in [n for n in graph.node if n.op_type == "Clip" and len(n.input) >= 3]:
        dq = writers.get(clip.input[0])
        if dq is None or dq.op_type != "DequantizeLinear" or len(dq.input) < 3:
            continue
        scale, zero = constant_values(graph, dq.input[1]), constant_values(graph, dq.input[2])
        bounds = [constant_values(graph, name) for name in clip.input[1:3]]
        if scale is None or zero is None or scale.size != 1 or any(b is None or b.size != 1 for b in bounds):
            continue
        if not Grid(np.float32(scale.item()), zero.reshape(())).covers(float(bounds[0]), float(bounds[1])):
            continue
        if clip.output[0] in outputs:  # the DequantizeLinear writes the graph output itself
            if len(consumers(graph).get(dq.output[0], [])) != 1:
                continue
            dq.output[0] = clip.output[0]
        else:
            for node in graph.node:
                node.input[:] = [dq.output[0] if i == clip.output[0] else i for i in node.input]
        graph.node.remove(clip)
        removed += 1
    drop_dead(graph)
    return removed


__all__ = ["drop_requantization", "pad_conv_channels", "dequantize_late", "image_grid_output",
           "drop_saturated_clips", "MIN_INT8_OUT_CHANNELS"]
