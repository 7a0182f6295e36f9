"""Real int8 ONNX: the float graph with QuantizeLinear/DequantizeLinear from the calibrated bounds.

For every Conv whose weight is ``<layer>.weight`` of a quantized layer of ``qnet``:

- input: ``QuantizeLinear -> DequantizeLinear`` with the layer's activation scale
  ``(u - l) / (2^a - 1)`` and uint8 zero point ``round(-l / scale)`` (the grid of
  :class:`~src.quantlib.fake_quant.FakeQuant`); below 8 bits a ``Clip`` to the
  ``a``-bit range comes first, so the uint8 tensor holds the same integers;
- weight: int8 per output channel (``axis=0``), symmetric, zero point 0,
  ``DequantizeLinear`` with the per-channel scale;
- bias: int32 with scale ``activation scale x weight scale`` (what an integer
  kernel adds to its int32 accumulator).

onnxruntime fuses ``DQ -> Conv -> (Relu) -> Q`` into ``QLinearConv`` (its optimised
graph shows it, see :func:`integer_kernels`). A Conv followed by something other than
Relu (PReLU in SESR/ECBSR, a residual Add in EDSR) has no Q after it, so it would stay
a float Conv; given ``output_ranges`` (observed with :func:`observe_output_ranges`) such
a Conv's output gets its own uint8 Q/DQ (8-bit min/max); this includes the last
layer (its output is the residual added to the upsampled input), so that it too
runs as ``QLinearConv`` (``quantize_last=False`` keeps it float). Differences from the fake-quant model:
integer-kernel requantisation rounding, the int32 bias and those 8-bit output steps.

onnxruntime's integer convolution is slow for fewer than 16 or a non-multiple of 4
output channels (measured on this machine, one conv on 360x640, float in/out: SESR's
16->4 5x5 output conv 14.0 ms int8 vs 11.4 ms float, padded to 16->16 7.0 ms; see
README), so such int8 convs get zero filters (:func:`pad_conv_channels`, exact), unless
they are sub-pixel output convs, which :mod:`src.export.onnx_subpixel` rewrites first.
Convs with few input channels (the image-facing first conv) are slow in int8 too,
but cannot simply be left float: given a DQ input and a Q output, onnxruntime
quantizes float weights itself (per tensor) and fuses anyway, which cost 0.05 dB on
ABPN x3 Set5 when tried.
"""
import os
import tempfile

import numpy as np
import onnx
from onnx import helper, numpy_helper

from src.export.onnx_graph import constant_values, consumers, drop_dead, producers
from src.export.onnx_subpixel import strided_subpixel_convs
from src.quantlib.convert import quant_layers

INTEGER_KERNELS = ("QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger", "QLinearAdd")
MIN_INT8_OUT_CHANNELS = 16
IMAGE_STEP = np.float32(1.0 / 255.0)  # the 8-bit image grid
# Ops that only move or select elements: with a per-tensor scale and zero point,
# ``op(DequantizeLinear(q)) == DequantizeLinear(op(q))`` exactly.
DATA_MOVEMENT_OPS = ("DepthToSpace", "SpaceToDepth", "Slice", "Transpose", "Reshape", "Squeeze", "Unsqueeze")


def _act_params(fq):
    """(scale, zero_point, clip_low, clip_high) of an asymmetric activation quantizer (its own grid)."""
    step, zero = (np.float32(v.ravel()[0]) for v in fq.grid())
    q_max = np.float32(fq.q_max)
    return step, int(zero), np.float32(-zero * step), np.float32((q_max - zero) * step)


def _weight_params(fq, weight):
    """(int8 weight, per-channel float32 scale) of a symmetric weight quantizer (its own grid)."""
    if not fq.symmetric:
        raise ValueError("int8 ONNX export needs symmetric weights; calibrate with --w_symmetric True")
    step = fq.grid()[0].reshape(-1)
    w_int = np.clip(np.floor(weight / step.reshape((-1,) + (1,) * (weight.ndim - 1)) + np.float32(0.5)),
                    -fq.q_max, fq.q_max)
    return w_int.astype(np.int8), step


def _const(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def observe_output_ranges(qnet, inputs):
    """{layer name: (min, max)} of every quantized layer's output over ``inputs`` (PyNative, hooks)."""
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    ranges, handles = {}, []
    for name, layer in quant_layers(qnet):
        def hook(_cell, _inputs, output, _name=name):
            out = output.asnumpy()
            lo, hi = ranges.get(_name, (np.inf, -np.inf))
            ranges[_name] = (min(lo, float(out.min())), max(hi, float(out.max())))
        handles.append(layer.register_forward_hook(hook))
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        for x in inputs:
            qnet(ms.Tensor(x))
    finally:
        for handle in handles:
            handle.remove()
        ms.set_context(mode=previous)
    return ranges


def _output_qdq(layer_name, out_name, value_range, grid=None):
    """Nodes and initializers of a uint8 Q/DQ on a Conv output; returns (nodes, inits, new output name).
    ``grid`` (scale, zero point) overrides the 8-bit min/max grid of ``value_range``."""
    lo, hi = min(value_range[0], 0.0), max(value_range[1], 0.0)
    step = np.float32(max(hi - lo, 1e-8) / 255.0)
    zero = np.uint8(np.clip(np.floor(-lo / step + 0.5), 0, 255))
    if grid is not None:
        step, zero = np.float32(grid[0]), np.uint8(grid[1])
    p = f"{layer_name}.out"
    nodes = [helper.make_node("QuantizeLinear", [p + "_float", p + "_scale", p + "_zero_point"], [p + "_q"],
                              name=p + "_quantize"),
             helper.make_node("DequantizeLinear", [p + "_q", p + "_scale", p + "_zero_point"], [out_name],
                              name=p + "_dequantize")]
    return nodes, [_const(p + "_scale", step), _const(p + "_zero_point", zero)], p + "_float"


def quantize_onnx(float_model, qnet, output_ranges=None, quantize_last=True):
    """QDQ ModelProto from the float ModelProto of the same network and the calibrated ``qnet``."""
    layers = {name: layer for name, layer in quant_layers(qnet)}
    last_layer = list(layers)[-1] if layers else None
    users = consumers(float_model.graph)

    def feeds_quantized_convs(name):
        """True if every reader of ``name`` is a quantized Conv that quantizes it as its input."""
        readers = users.get(name, [])
        return bool(readers) and all(
            n.op_type == "Conv" and n.input[0] == name and n.input[1].endswith(".weight")
            and n.input[1][:-len(".weight")] in layers and layers[n.input[1][:-len(".weight")]].act_quant.enabled
            for n in readers)
    def reader_grid(name):
        """(scale, zero point) of an 8-bit quantized Conv reading ``name`` (None if there is none): a
        Conv output that also feeds a residual is quantized once, on that Conv's input grid, so that
        onnxruntime needs no DequantizeLinear -> QuantizeLinear re-quantisation between them."""
        for reader in users.get(name, []):
            layer_name = reader.input[1][:-len(".weight")] if reader.op_type == "Conv" else None
            layer = layers.get(layer_name)
            if layer is not None and reader.input[0] == name and layer.act_quant.enabled and layer.act_quant.bits == 8:
                return _act_params(layer.act_quant)[:2]
        return None
    after_relu = {}  # Relu output -> (layer name, range): quantize there (a Relu no quantized conv reads)
    if not layers:
        raise ValueError("the model holds no quantizer bounds: --quant int8 needs a calibrated or QAT "
                         "checkpoint (eval.py --quant_method dbdc --save_quant_ckpt FILE)")
    graph = float_model.graph
    inits = {t.name: t for t in graph.initializer}
    new_nodes, new_inits, done, drop = [], [], set(), set()
    for node in graph.node:
        layer_name = node.input[1][:-len(".weight")] if node.op_type == "Conv" and node.input[1].endswith(
            ".weight") else None
        layer = layers.get(layer_name)
        if layer is None:
            new_nodes.append(node)
            if node.op_type == "Relu" and node.output[0] in after_relu:
                owner, value_range = after_relu[node.output[0]]
                nodes, q_inits, float_name = _output_qdq(owner, node.output[0], (0.0, max(value_range[1], 0.0)))
                node.output[0] = float_name
                new_nodes.extend(nodes)
                new_inits.extend(q_inits)
            continue
        a_on, w_on = layer.act_quant.enabled, layer.weight_quant.enabled
        if a_on and layer.act_quant.bits > 8 or w_on and layer.weight_quant.bits > 8:
            raise ValueError(f"layer {layer_name} uses more than 8 bits; int8 export needs <= 8")
        x_name = node.input[0]
        act_step = None
        if a_on:
            act_step, zero, low, high = _act_params(layer.act_quant)
            p = f"{layer_name}.act"
            new_inits += [_const(p + "_scale", act_step), _const(p + "_zero_point", np.uint8(zero))]
            if layer.act_quant.bits < 8:
                new_inits += [_const(p + "_clip_min", low), _const(p + "_clip_max", high)]
                new_nodes.append(helper.make_node("Clip", [x_name, p + "_clip_min", p + "_clip_max"],
                                                  [p + "_clipped"], name=p + "_clip"))
                x_name = p + "_clipped"
            new_nodes.append(helper.make_node("QuantizeLinear", [x_name, p + "_scale", p + "_zero_point"],
                                              [p + "_q"], name=p + "_quantize"))
            new_nodes.append(helper.make_node("DequantizeLinear", [p + "_q", p + "_scale", p + "_zero_point"],
                                              [p + "_dq"], name=p + "_dequantize"))
            x_name = p + "_dq"
        inputs = [x_name] + list(node.input[1:])
        if w_on:
            weight = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
            w_int, w_step = _weight_params(layer.weight_quant, weight)
            p = f"{layer_name}.weight"
            new_inits += [_const(p + "_quantized", w_int), _const(p + "_scale", w_step),
                          _const(p + "_zero_point", np.zeros(len(w_step), np.int8))]
            new_nodes.append(helper.make_node("DequantizeLinear", [p + "_quantized", p + "_scale", p + "_zero_point"],
                                              [p + "_dq"], name=p + "_dequantize", axis=0))
            inputs[1] = p + "_dq"
            drop.add(node.input[1])
            if a_on and len(node.input) > 2 and node.input[2]:
                bias = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32)
                b_step = (act_step * w_step).astype(np.float32)
                b_int = np.clip(np.floor(bias / b_step + 0.5), -2 ** 31, 2 ** 31 - 1).astype(np.int32)
                p = f"{layer_name}.bias"
                new_inits += [_const(p + "_quantized", b_int), _const(p + "_scale", b_step),
                              _const(p + "_zero_point", np.zeros(len(b_step), np.int32))]
                new_nodes.append(helper.make_node("DequantizeLinear",
                                                  [p + "_quantized", p + "_scale", p + "_zero_point"],
                                                  [p + "_dq"], name=p + "_dequantize", axis=0))
                inputs[2] = p + "_dq"
                drop.add(node.input[2])
        conv = onnx.NodeProto()
        conv.CopyFrom(node)
        del conv.input[:]
        conv.input.extend(inputs)
        new_nodes.append(conv)
        out_name = node.output[0]
        if output_ranges and layer_name in output_ranges and (quantize_last or layer_name != last_layer):
            readers = users.get(out_name, [])
            if len(readers) == 1 and readers[0].op_type == "Relu":
                if not feeds_quantized_convs(readers[0].output[0]):
                    after_relu[readers[0].output[0]] = (layer_name, output_ranges[layer_name])
            else:
                nodes, q_inits, float_name = _output_qdq(layer_name, out_name, output_ranges[layer_name],
                                                         reader_grid(out_name))
                conv.output[0] = float_name
                new_nodes.extend(nodes)
                new_inits.extend(q_inits)
        done.add(layer_name)
    missing = sorted(set(layers) - done)
    if missing:
        raise ValueError(f"quantized layers not found as Conv nodes in the ONNX graph: {', '.join(missing)}")
    model = onnx.ModelProto()
    model.CopyFrom(float_model)
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    kept = [t for t in graph.initializer if t.name not in drop]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept + new_inits)
    _drop_requantization(model)
    strided_subpixel_convs(model)
    pad_conv_channels(model)
    dequantize_late(model)  # first, so that a conv output's DQ (past a padding Slice) feeds the final Add
    # RGB models take and give 8-bit images. A Y-channel model (SESR) takes a float Y computed from
    # RGB and its Y output is turned back into RGB, so rounding both to 1/255 costs Set5 0.06-0.08 dB
    # (measured on both SESR x2 checkpoints): its output stays float.
    if int(getattr(qnet, "n_colors", 3)) == 3 and image_grid_output(model):
        dequantize_late(model)  # the new DQ of the sum moves past the pixel shuffle
    onnx.checker.check_model(model)
    return model


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
    if clip is None or clip.op_type != "Clip" or len(clip.input) < 3:
        return False
    bounds = [constant_values(graph, name) for name in clip.input[1:3]]
    if any(b is None or b.size != 1 for b in bounds) or (float(bounds[0]), float(bounds[1])) != (0.0, 1.0):
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
    graph.initializer.extend([_const(p + "_scale", IMAGE_STEP), _const(p + "_zero_point", np.uint8(0))])
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


def _drop_requantization(model):
    """Remove ``DequantizeLinear -> QuantizeLinear`` pairs with the same scale and zero point (the
    QuantizeLinear's readers take the DequantizeLinear's integer input)."""
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


def integer_kernels(path):
    """{op type: count} of integer kernels in onnxruntime's optimised graph of the file at ``path``."""
    from src.export.onnx_float import ort_session  # pylint: disable=import-outside-toplevel
    with tempfile.TemporaryDirectory() as tmp:
        optimized = os.path.join(tmp, "optimized.onnx")
        ort_session(path, optimized_path=optimized)
        graph = onnx.load(optimized).graph
    counts = {}
    for node in graph.node:
        if node.op_type in INTEGER_KERNELS:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


__all__ = ["quantize_onnx", "integer_kernels", "dequantize_late", "image_grid_output", "INTEGER_KERNELS"]


def pad_conv_channels(model, multiple=4, min_channels=MIN_INT8_OUT_CHANNELS):
    """Pad the output channels of int8 Convs to a multiple of ``multiple``, and to at least
    ``min_channels`` (in place).

    onnxruntime's integer convolution is about twice as slow with 27 output channels
    (ABPN at x3) as with 28. A Conv whose output reaches exactly one other Conv
    through per-tensor element-wise ops only (Relu, Q/DQ) gets zero filters (bias 0,
    weight scale 1) appended, and the next Conv zero input weights for them, so
    the result is unchanged: the extra channels are exactly 0 and are ignored.
    A chain that ends elsewhere (the last Conv's quantized output feeding the
    residual Add) is padded too and cut back with a Slice after its DequantizeLinear.
    """
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    readers = consumers(graph)
    writers = producers(graph)
    padded, slices = 0, []

    def _set(init_name, array):
        inits[init_name].CopyFrom(numpy_helper.from_array(array, init_name))

    for conv in [n for n in graph.node if n.op_type == "Conv"]:
        w_dq = writers.get(conv.input[1])
        if w_dq is None or w_dq.op_type != "DequantizeLinear" or w_dq.input[0] not in inits:
            continue
        w = numpy_helper.to_array(inits[w_dq.input[0]])
        extra = max(min_channels, w.shape[0] + (-w.shape[0]) % multiple) - w.shape[0]
        if extra == 0 or any(a.name == "group" and a.i != 1 for a in conv.attribute):
            continue
        name, nxt = conv.output[0], None
        while True:  # follow the single chain of element-wise per-tensor ops
            users = readers.get(name, [])
            if len(users) != 1:
                break
            user = users[0]
            if user.op_type == "Conv" and user.input[0] == name:
                nxt = user
                break
            if user.op_type not in ("Relu", "QuantizeLinear", "DequantizeLinear") or user.input[0] != name:
                break
            name = user.output[0]
        nxt_dq = writers.get(nxt.input[1]) if nxt is not None else None
        if nxt is not None and (nxt_dq is None or nxt_dq.op_type != "DequantizeLinear"
                                or nxt_dq.input[0] not in inits
                                or any(a.name == "group" and a.i != 1 for a in nxt.attribute)):
            continue
        if nxt is None and name == conv.output[0]:
            continue  # a float Conv output: nothing gained

        w_scale = numpy_helper.to_array(inits[w_dq.input[1]])
        _set(w_dq.input[0], np.concatenate([w, np.zeros((extra,) + w.shape[1:], w.dtype)]))
        _set(w_dq.input[1], np.concatenate([w_scale, np.ones(extra, np.float32)]))
        zp = numpy_helper.to_array(inits[w_dq.input[2]])
        _set(w_dq.input[2], np.concatenate([zp, np.zeros(extra, zp.dtype)]))
        if len(conv.input) > 2 and conv.input[2]:
            b_dq = writers.get(conv.input[2])
            if b_dq is not None and b_dq.op_type == "DequantizeLinear":
                act_scale = float(numpy_helper.to_array(inits[b_dq.input[1]])[0] / w_scale[0])
                for idx, fill in ((0, 0), (1, act_scale), (2, 0)):  # bias scale = activation x weight scale
                    arr = numpy_helper.to_array(inits[b_dq.input[idx]])
                    _set(b_dq.input[idx], np.concatenate([arr, np.full(extra, fill, arr.dtype)]))
            else:
                arr = numpy_helper.to_array(inits[conv.input[2]])
                _set(conv.input[2], np.concatenate([arr, np.zeros(extra, arr.dtype)]))
        if nxt is not None:
            w_next = numpy_helper.to_array(inits[nxt_dq.input[0]])
            _set(nxt_dq.input[0], np.concatenate(
                [w_next, np.zeros((w_next.shape[0], extra) + w_next.shape[2:], w_next.dtype)], axis=1))
        else:  # the chain ends elsewhere (e.g. the residual Add): drop the extra channels there
            slices.append((name, w.shape[0]))
        padded += 1
    for name, channels in slices:
        last = writers[name]
        last.output[0] = name + "_padded"
        consts = [numpy_helper.from_array(np.array([v], np.int64), f"{name}_slice_{k}")
                  for k, v in (("starts", 0), ("ends", channels), ("axes", 1))]
        graph.initializer.extend(consts)
        index = list(graph.node).index(last) + 1
        graph.node.insert(index, helper.make_node("Slice", [name + "_padded"] + [c.name for c in consts], [name],
                                                  name=f"{name}_slice"))
    if padded:
        del graph.value_info[:]
        onnx.checker.check_model(model)
    return padded
