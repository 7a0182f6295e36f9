"""Which tensor of an ONNX graph gets which integer grid: the planning half of the int8 export.

A :class:`QDQPlan` holds *marks*; :mod:`src.export.onnx.qdq_writer` turns them into
``QuantizeLinear``/``DequantizeLinear`` nodes. Like onnxruntime's QDQ quantizer, a
per-op registry decides the marks: :data:`DESKTOP_RULES` / :data:`MOBILE_RULES` map an
op type to a function ``rule(node, state)`` that marks that node's tensors.

Grids (all from the calibrated fake-quant model ``qnet`` unless said otherwise):

- a quantized Conv's input: the layer's activation grid, uint8, scale ``(u - l) / (2^a - 1)``,
  zero point ``round(-l / scale)`` (:class:`~src.quantlib.fake_quant.FakeQuant`); below 8
  bits a ``Clip`` to the ``a``-bit range comes first, so the uint8 tensor holds the same integers;
- its weight: int8 per output channel (``axis=0``), symmetric, zero point 0; its bias: int32
  with scale ``activation scale x weight scale``;
- a Conv output followed by anything but Relu (and a Relu output no quantized Conv reads):
  the input grid of the 8-bit quantized Conv that reads it, else an 8-bit min/max grid of the
  range observed on the example (``output_ranges``, see :func:`src.export.onnx.onnx_qdq.observe_output_ranges`).

Desktop marks only those (the Q/DQ onnxruntime fuses into ``QLinearConv``); a Conv input is
marked for that Conv alone (an *edge* mark), so other readers of the tensor stay float.
Mobile marks every tensor between two ops (*tensor* marks, read by every reader), since a
full-integer phone graph (NNAPI, TFLite) has no float op inside: also the graph input, the
PReLU / Add / Concat / DepthToSpace / Clip outputs (data movement keeps its input's grid;
an ``Add -> data movement -> Clip(0, 1)`` tail, or in an RGB model an ``Add -> data movement``
tail, puts the sum on the 8-bit image grid, scale 1/255, zero point 0, whose uint8 saturation
is the clip; the rest get 8-bit min/max grids of the float graph's ranges on the example).
Choices that avoid roundings the fake-quant model does not make: an RGB input (8-bit pixels)
is on the image grid and the first conv requantizes it to its calibrated grid; when the anchor
(a Concat of the input) is a term of that image-grid sum, the input is on the image grid and the
residual conv output on a 1/255-step grid, so the sum is exact; an Add term whose sum goes onto
a calibrated conv grid is observed only over the range that can reach it (:func:`add_term_range`).

Format followed: the ONNX QDQ representation (onnxruntime docs, "Quantize ONNX models": QDQ
format; QuantizeLinear / DequantizeLinear-13 with per-axis scales), whose conventions match the
TFLite 8-bit quantization spec used by :mod:`src.export.tflite.tflite_graph` (int8 symmetric per-channel
weights, int32 biases of scale ``s_in s_w``, asymmetric 8-bit activations).
"""
from dataclasses import dataclass, field

import numpy as np
from onnx import numpy_helper

from src.export.onnx.onnx_graph import constant_values, consumers, is_unit_clip, producers
from src.quantlib.grid import grid_range, step_np, to_integers_np, widen_np, zero_point_np
from src.quantlib.quant_layers import quant_layers
from src.errors import UserError

IMAGE_STEP = np.float32(1.0 / 255.0)  # the 8-bit image grid
# Ops that only move or select elements: with a per-tensor scale and zero point,
# ``op(DequantizeLinear(q)) == DequantizeLinear(op(q))`` exactly.
DATA_MOVEMENT_OPS = ("DepthToSpace", "SpaceToDepth", "Slice", "Transpose", "Reshape", "Squeeze", "Unsqueeze")


@dataclass(frozen=True)
class Grid:
    """A per-tensor integer grid: ``real = scale * (q - zero_point)``; ``clip`` (low, high) is applied
    before quantizing (sub-8-bit activations held in uint8)."""
    scale: np.float32
    zero_point: np.ndarray  # 0-d array; its dtype is the integer type (uint8 for activations)
    clip: tuple = None

    def same(self, other):
        """True if ``other`` is a :class:`Grid` with the same float32 scale, zero point (value and
        integer type) and clip."""
        return (other is not None and np.float32(self.scale) == np.float32(other.scale)
                and self.zero_point.dtype == other.zero_point.dtype
                and int(self.zero_point) == int(other.zero_point) and self.clip == other.clip)

    def bounds(self):
        """(lowest, highest) real value on the grid (within ``clip`` when set)."""
        if self.clip is not None:
            return float(self.clip[0]), float(self.clip[1])
        info = np.iinfo(self.zero_point.dtype)
        return grid_range(self.scale, self.zero_point, info.min, info.max)

    def covers(self, low, high):
        """True if every value of the grid lies in [low, high] (a Clip to them is then the identity)."""
        lo, hi = self.bounds()
        # float32 rounding of the scale: float32(1/255) x 255 is 1 + 2e-8, yet that is the image grid's 1.0
        slack = 1e-6 * max(abs(lo), abs(hi), float(self.scale))
        return low - slack <= lo and hi <= high + slack


@dataclass
class ActivationMark:
    """Quantize ``tensor`` on ``grid``; ``reader`` None: every reader takes the dequantized value (the
    producer's output is renamed ``<prefix>_float``); else only the node named ``reader`` does."""
    tensor: str
    grid: Grid
    prefix: str
    reader: str = None


@dataclass
class ConvMark:
    """Integer weight (int8, per output channel, axis 0) and bias (int32) of the Conv reading ``weight``."""
    weight: str
    prefix: str
    w_int: np.ndarray
    w_scale: np.ndarray
    bias: str = None
    b_int: np.ndarray = None
    b_scale: np.ndarray = None


@dataclass
class QDQPlan:
    """The marks of one graph: ``activations`` (:class:`ActivationMark`, in marking order, the order
    the writer inserts them) and ``convs`` ({weight initializer name: :class:`ConvMark`})."""
    activations: list = field(default_factory=list)
    convs: dict = field(default_factory=dict)  # weight initializer name -> ConvMark

    def grid_of(self, tensor):
        """The grid every reader of ``tensor`` sees (a tensor mark), or None."""
        for mark in self.activations:
            if mark.tensor == tensor and mark.reader is None:
                return mark.grid
        return None

    def mark_tensor(self, tensor, grid, prefix):
        """Tensor mark; a tensor already on the same grid is left alone. Returns False on a clash."""
        known = self.grid_of(tensor)
        if known is not None:
            return known.same(grid)
        self.activations.append(ActivationMark(tensor, grid, prefix))
        return True


def act_grid(fq):
    """:class:`Grid` of an asymmetric activation quantizer (its own step and zero point)."""
    step, zero = (np.float32(v.ravel()[0]) for v in fq.grid())
    clip = None
    if fq.bits < 8:
        clip = (np.float32(-zero * step), np.float32((np.float32(fq.q_max) - zero) * step))
    return Grid(np.float32(step), np.array(int(zero), np.uint8), clip)


def observed_grid(value_range):
    """8-bit uint8 min/max grid of ``(min, max)`` (widened to include 0)."""
    lo, hi = (float(v) for v in widen_np(value_range[0], value_range[1]))
    step = np.float32(step_np(lo, hi, 255, False))
    return Grid(step, np.array(zero_point_np(lo, step, 255), np.uint8))


IMAGE_GRID = Grid(IMAGE_STEP, np.array(0, np.uint8))


def weight_grid(fq, weight):
    """(int8 weight, per-channel float32 scale) of a symmetric weight quantizer (its own grid). A weight
    with fewer filters than the quantizer (a mobile rewrite dropped trailing output channels) uses
    the leading scales."""
    if not fq.symmetric:
        raise UserError("int8 ONNX export needs symmetric weights; calibrate with --w_symmetric True")
    step = fq.grid()[0].reshape(-1)[:weight.shape[0]]
    w_int = to_integers_np(weight, step.reshape((-1,) + (1,) * (weight.ndim - 1)), None, -fq.q_max, fq.q_max)
    return w_int.astype(np.int8), step


class PlanState:
    """What the rules read: the graph, the quantized layers by name, observed ranges and the plan."""

    def __init__(self, model, qnet, output_ranges, tensor_ranges=None, rgb=False, site_grids=None):
        self.graph = model.graph
        # a deployment model's grids ({layer: Grid}, {tensor: Grid}, src/export/deploy_sites.py):
        # every grid is read from them or from the conv input grids, nothing from observed ranges
        self.deploy = site_grids is not None
        self.layer_grids, self.tensor_grids = site_grids if self.deploy else ({}, {})
        self.rgb = rgb  # the graph takes and gives 8-bit RGB images (as floats in [0, 1])
        self.image_sum = image_tail(self.graph, clip=False) if rgb else None
        self.image_sums = {image_tail(self.graph), self.image_sum} - {None}
        self.layers = dict(quant_layers(qnet))
        if not self.layers:
            raise UserError("the model holds no quantizer bounds: --quant int8 needs a calibrated or QAT "
                             "checkpoint (eval.py --quant_method dbdc --save_quant_ckpt FILE)")
        self.last_layer = list(self.layers)[-1]
        self.output_ranges = output_ranges or {}
        self.tensor_ranges = tensor_ranges or {}
        self.users = consumers(self.graph)
        self.writers = producers(self.graph)
        self.inits = {t.name: t for t in self.graph.initializer}
        self.plan = QDQPlan()
        self.done = set()

    def is_image_sum_term(self, tensor):
        """:func:`is_image_sum_term` in this graph."""
        return is_image_sum_term(self.users, self.writers, {value.name for value in self.graph.input},
                                 self.image_sums, tensor)

    def is_image_anchor_source(self, tensor):
        """True if a Concat of ``tensor`` (the anchor) is a term of the image-grid residual sum."""
        return any(reader.op_type == "Concat" and any(self.is_image_sum_term_of(reader.output[0], other)
                                                      for other in self.users.get(reader.output[0], []))
                   for reader in self.users.get(tensor, []))

    def is_image_sum_term_of(self, tensor, add):
        """True if ``add`` is the image-grid residual sum and ``tensor`` one of its terms."""
        return add.op_type == "Add" and add.output[0] in self.image_sums and tensor in add.input

    def layer_of(self, node):
        """(layer name, quantized layer) of a Conv reading ``<layer>.weight``; (None, None) otherwise."""
        if node.op_type != "Conv" or not node.input[1].endswith(".weight"):
            return None, None
        name = node.input[1][:-len(".weight")]
        return (name, self.layers[name]) if name in self.layers else (None, None)

    def input_grid_of_reader(self, tensor, bits=None):
        """Grid of a quantized Conv that reads ``tensor`` as its input (8-bit only with ``bits=8``)."""
        for reader in self.users.get(tensor, []):
            _, layer = self.layer_of(reader)
            if layer is not None and reader.input[0] == tensor and layer.act_quant.enabled \
                    and (bits is None or layer.act_quant.bits == bits):
                return act_grid(layer.act_quant)
        return None

    def read_only_by_quantized_convs(self, tensor):
        """True if ``tensor`` has readers and each is a quantized Conv with its activation quantizer
        on, reading it as its data input."""
        readers = self.users.get(tensor, [])
        return bool(readers) and all(
            self.layer_of(n)[1] is not None and n.input[0] == tensor and self.layer_of(n)[1].act_quant.enabled
            for n in readers)

    def conv_output_range(self, node):
        """Observed (min, max) of a quantized Conv's output, or None (no range, or the last layer
        when ``quantize_last`` is off)."""
        name, _ = self.layer_of(node)
        return self.output_ranges.get(name) if name is not None else None


def _check_bits(name, layer):
    if layer.act_quant.enabled and layer.act_quant.bits > 8 or layer.weight_quant.enabled and layer.weight_quant.bits > 8:
        raise UserError(f"layer {name} uses more than 8 bits; int8 export needs <= 8")


def _mark_conv_weights(node, name, layer, state):
    if not layer.weight_quant.enabled:
        return
    weight = numpy_helper.to_array(state.inits[node.input[1]]).astype(np.float32)
    w_int, w_step = weight_grid(layer.weight_quant, weight)
    mark = ConvMark(node.input[1], name, w_int, w_step)
    if layer.act_quant.enabled and len(node.input) > 2 and node.input[2]:
        bias = numpy_helper.to_array(state.inits[node.input[2]]).astype(np.float32)
        b_step = (act_grid(layer.act_quant).scale * w_step).astype(np.float32)
        mark.bias, mark.b_scale = node.input[2], b_step
        mark.b_int = to_integers_np(bias, b_step, None, -2 ** 31, 2 ** 31 - 1).astype(np.int32)
    state.plan.convs[node.input[1]] = mark


def _conv_output_grid(node, state):
    """Grid of a quantized Conv output that is not followed by a single Relu (None: stays float); a
    deployment model's: its site grid, else the reading conv's input grid."""
    if state.deploy:
        name, _ = state.layer_of(node)
        grid = state.layer_grids.get(name) or state.input_grid_of_reader(node.output[0], bits=8)
        if grid is None and state.rgb and reaches_image_output(state.graph, state.users, node.output[0]):
            grid = IMAGE_GRID  # the output image: the 8-bit rounding the evaluation does (no site)
        return grid
    value_range = state.conv_output_range(node)
    if value_range is None:
        return None
    return state.input_grid_of_reader(node.output[0], bits=8) or observed_grid(value_range)


def desktop_conv(node, state):
    """Desktop: edge mark on the input, integer weights, a tensor mark on the output (see module doc).
    A Conv that is not a quantized layer is left float; ValueError for a layer of more than 8 bits."""
    name, layer = state.layer_of(node)
    if layer is None:
        return
    _check_bits(name, layer)
    if layer.act_quant.enabled:
        state.plan.activations.append(ActivationMark(node.input[0], act_grid(layer.act_quant), f"{name}.act",
                                                     reader=node.name or node.output[0]))
    _mark_conv_weights(node, name, layer, state)
    readers = state.users.get(node.output[0], [])
    if not (len(readers) == 1 and readers[0].op_type == "Relu"):
        grid = _conv_output_grid(node, state)
        if grid is not None:
            state.plan.mark_tensor(node.output[0], grid, f"{name}.out")
    state.done.add(name)


def desktop_relu(node, state):
    """A Relu right after a quantized Conv (its only reader) that no quantized Conv reads: 8-bit
    ``(0, max)`` grid on its output, named after the Conv."""
    conv = state.writers.get(node.input[0])
    name, layer = state.layer_of(conv) if conv is not None else (None, None)
    if layer is None or len(state.users.get(conv.output[0], [])) != 1:
        return
    value_range = state.conv_output_range(conv)
    if value_range is None or state.read_only_by_quantized_convs(node.output[0]):
        return
    state.plan.mark_tensor(node.output[0], observed_grid((0.0, max(value_range[1], 0.0))), f"{name}.out")


def mobile_conv(node, state):
    """Mobile: like desktop, but the input mark is a tensor mark (every reader of the tensor, e.g.
    the anchor's Concat of the graph input, sees the quantized value)."""
    name, layer = state.layer_of(node)
    if layer is None:
        raise UserError(f"Conv {node.name or node.output[0]} has no quantizer: a full-integer mobile graph "
                         "needs every conv quantized (calibrate all layers)")
    _check_bits(name, layer)
    if layer.act_quant.enabled:
        grid = act_grid(layer.act_quant)
        if not state.plan.mark_tensor(node.input[0], grid, f"{name}.act"):  # another grid already: requantize
            state.plan.activations.append(ActivationMark(node.input[0], grid, f"{name}.act",
                                                         reader=node.name or node.output[0]))
    _mark_conv_weights(node, name, layer, state)
    readers = state.users.get(node.output[0], [])
    if not (len(readers) == 1 and readers[0].op_type == "Relu"):
        grid = _conv_output_grid(node, state)
        if grid is None:
            raise UserError(f"no deployment grid for the output of layer {name}; calibrate the checkpoint again"
                             if state.deploy else
                             f"no observed output range for layer {name}; pass output_ranges for every layer")
        if not state.deploy and state.plan.grid_of(node.output[0]) is None \
                and state.is_image_sum_term(node.output[0]):
            grid = residual_grid(state.conv_output_range(node))
        state.plan.mark_tensor(node.output[0], grid, f"{name}.out")
    state.done.add(name)


def mobile_relu(node, state):
    """A Relu after a Conv: the reading Conv's grid, else 8-bit ``(0, max)``; any other Relu: like
    any op (:func:`mobile_other`)."""
    conv = state.writers.get(node.input[0])
    name, layer = state.layer_of(conv) if conv is not None else (None, None)
    if layer is None or len(state.users.get(conv.output[0], [])) != 1:
        mobile_other(node, state)
        return
    if state.plan.grid_of(node.output[0]) is not None:
        return
    if state.deploy:
        grid = state.input_grid_of_reader(node.output[0], bits=8)
        if grid is None and state.rgb and reaches_output(state.users, state.graph.output[0].name, node.output[0]):
            grid = IMAGE_GRID  # the output image: the evaluation's own 8-bit rounding
        grid = grid or state.layer_grids.get(name)
        if grid is None:
            raise UserError(f"no deployment grid for the Relu after layer {name}; calibrate the checkpoint again")
        state.plan.mark_tensor(node.output[0], grid, f"{name}.out")
        return
    value_range = state.conv_output_range(conv)
    grid = state.input_grid_of_reader(node.output[0], bits=8)
    if grid is None and value_range is None:
        raise ValueError(f"no observed output range for layer {name}; pass output_ranges for every layer")
    state.plan.mark_tensor(node.output[0], grid or observed_grid((0.0, max(value_range[1], 0.0))), f"{name}.out")


def mobile_data_movement(node, state):
    """DepthToSpace / Concat of inputs on one grid: the same grid (exact on the integers)."""
    grids = [state.plan.grid_of(name) for name in node.input if name not in state.inits]
    if grids and all(g is not None and g.same(grids[0]) for g in grids):
        state.plan.mark_tensor(node.output[0], grids[0], node.output[0])
    else:
        mobile_other(node, state)


def mobile_clip(node, state):
    """A Clip whose input grid lies inside its bounds is the identity there: the same grid."""
    grid = state.plan.grid_of(node.input[0])
    bounds = [constant_values(state.graph, name) if name else np.float32(default)
              for name, default in zip((list(node.input[1:3]) + ["", ""])[:2], (-np.inf, np.inf))]
    if grid is not None and all(b is not None and b.size == 1 for b in bounds) \
            and grid.covers(float(bounds[0]), float(bounds[1])):
        state.plan.mark_tensor(node.output[0], grid, node.output[0])
    else:
        mobile_other(node, state)


def mobile_add(node, state):
    """An Add ending in ``-> data movement -> Clip(0, 1)`` (the residual sum of an image model), or,
    in an RGB model, in ``-> data movement ->`` the graph output (its image, which every reader
    clamps to [0, 1] and rounds to 8 bits): the 8-bit image grid; otherwise like any op."""
    if node.output[0] in state.image_sums:
        state.plan.mark_tensor(node.output[0], IMAGE_GRID, node.output[0] + "_image")
    else:
        mobile_other(node, state)


def mobile_other(node, state):
    """Any other op output: the reading Conv's 8-bit grid, else 8-bit min/max of its observed range
    (narrowed to what an Add reading it can pass on, :func:`add_term_range`)."""
    for out in node.output:
        if state.plan.grid_of(out) is not None:
            continue
        grid = state.input_grid_of_reader(out, bits=8)
        if grid is None and state.deploy and state.rgb and reaches_image_output(state.graph, state.users, out):
            grid = IMAGE_GRID
        if grid is None and state.deploy:
            grid = state.tensor_grids.get(out)
            if grid is None:
                raise UserError(f"no deployment grid for tensor {out} ({node.op_type}); calibrate the checkpoint again")
        if grid is None:
            if out not in state.tensor_ranges:
                raise ValueError(f"no observed range for tensor {out} ({node.op_type})")
            grid = observed_grid(add_term_range(out, state.tensor_ranges[out], state))
        state.plan.mark_tensor(out, grid, out)


def reaches_output(users, final, tensor):
    """True if ``tensor`` goes to the graph output ``final`` through single-reader data movement only
    (``users``: :func:`~src.export.onnx.onnx_graph.consumers` of the graph)."""
    while tensor != final:
        readers = users.get(tensor, [])
        if len(readers) != 1 or readers[0].op_type not in DATA_MOVEMENT_OPS:
            return False
        tensor = readers[0].output[0]
    return True


def reaches_image_output(graph, users, tensor):
    """True if ``tensor`` goes to the graph output through single-reader data movement and unit clips
    (``Clip(0, 1)``) only: in an RGB model it is the output image, whose 8-bit rounding every reader does."""
    final = graph.output[0].name
    while tensor != final:
        readers = users.get(tensor, [])
        if len(readers) != 1 or not (readers[0].op_type in DATA_MOVEMENT_OPS or is_unit_clip(graph, readers[0])):
            return False
        tensor = readers[0].output[0]
    return True


def is_image_sum_term(users, writers, inputs, image_sums, tensor):
    """True if ``tensor``'s only reader is an Add in ``image_sums`` (the residual sum put on the image
    grid, see :func:`mobile_add`) whose other term is a Concat of graph ``inputs`` (the anchor);
    ``users`` / ``writers``: :func:`~src.export.onnx.onnx_graph.consumers` / ``producers`` of the graph."""
    readers = users.get(tensor, [])
    if len(readers) != 1 or readers[0].op_type != "Add" or readers[0].output[0] not in image_sums:
        return False
    other = [name for name in readers[0].input if name != tensor]
    node = writers.get(other[0]) if len(other) == 1 else None
    return node is not None and node.op_type == "Concat" and set(node.input) <= inputs


def add_term_range(tensor, value_range, state):
    """``value_range`` of ``tensor`` narrowed to the values that matter when its only reader is an
    ``Add(tensor, other)`` whose sum is quantized on a calibrated 8-bit conv input grid [L, H] and
    ``other`` is on a grid [lo, hi] already: outside [L - hi, H - lo] the sum saturates whatever
    ``other`` is, so saturating ``tensor`` there changes nothing (SESR's last PReLU output)."""
    readers = state.users.get(tensor, [])
    if len(readers) != 1 or readers[0].op_type != "Add" or len(readers[0].input) != 2:
        return value_range
    add = readers[0]
    other = add.input[1] if add.input[0] == tensor else add.input[0]
    sum_grid, other_grid = state.input_grid_of_reader(add.output[0], bits=8), state.plan.grid_of(other)
    if other == tensor or sum_grid is None or other_grid is None or sum_grid.clip is not None:
        return value_range
    (low, high), (o_low, o_high) = sum_grid.bounds(), other_grid.bounds()
    narrowed = (max(value_range[0], low - o_high), min(value_range[1], high - o_low))
    return narrowed if narrowed[0] < narrowed[1] else value_range


def residual_grid(value_range):
    """uint8 grid of step 1/255 (the image grid's) for a residual added to an image-grid term: the sum
    is then exact on the integers, so the output is rounded once, as the fake-quant model's output
    is when written as an 8-bit image; zero point from the observed ``value_range``."""
    low = min(value_range[0], 0.0)
    return Grid(IMAGE_STEP, np.array(zero_point_np(low, IMAGE_STEP, 255), np.uint8))


DESKTOP_RULES = {"Conv": desktop_conv, "Relu": desktop_relu}
# Mobile: Conv (and a Relu fused to it) first, so the other rules see the conv grids.
MOBILE_RULES = {"Conv": mobile_conv, "Relu": mobile_relu, "DepthToSpace": mobile_data_movement,
                "Concat": mobile_data_movement, "Clip": mobile_clip, "Add": mobile_add}


def image_tail(graph, clip=True):
    """Output name of the Add in a graph ending ``Add(DequantizeLinear or float) -> data movement ->
    Clip(0, 1)`` (an image model's residual sum), or None; ``clip=False``: a graph ending ``Add ->
    data movement`` (no Clip)."""
    if len(graph.output) != 1:
        return None
    writers, users = producers(graph), consumers(graph)
    node = writers.get(graph.output[0].name)
    if clip:
        if not is_unit_clip(graph, node):
            return None
        node = writers.get(node.input[0])
    final = graph.output[0].name

    def only_path(tensor):  # read by the next node only (the graph output: by nothing)
        return len(users.get(tensor, [])) == (0 if tensor == final else 1)
    while node is not None and node.op_type in DATA_MOVEMENT_OPS and only_path(node.output[0]):
        node = writers.get(node.input[0])
    if node is None or node.op_type != "Add" or not only_path(node.output[0]):
        return None
    return node.output[0]


def plan_desktop(model, qnet, output_ranges=None, quantize_last=True):
    """:class:`QDQPlan` of the desktop profile for the float ``model`` (ONNX, NCHW) of the calibrated
    fake-quant ``qnet``; ``output_ranges``: {layer name: (min, max)} of the quantized conv outputs
    in the network's float units (observed on the example image in [0, 1]); without
    ``quantize_last`` the last layer's output stays float. ValueError for a layer of more than 8
    bits, a ``qnet`` without quantizers, or a quantized layer not found as a Conv of the graph."""
    ranges = dict(output_ranges or {})
    layers = [name for name, _ in quant_layers(qnet)]
    if not quantize_last and layers:
        ranges.pop(layers[-1], None)
    state = PlanState(model, qnet, ranges)
    for node in model.graph.node:
        rule = DESKTOP_RULES.get(node.op_type)
        if rule is not None:
            rule(node, state)
    _require_all_layers(state)
    return state.plan


def plan_mobile(model, qnet, output_ranges, tensor_ranges, rgb=False, site_grids=None):
    """:class:`QDQPlan` of the mobile profile: every tensor between two ops on a grid (graph input
    and output included). ``tensor_ranges``: {tensor name: (min, max)} of the float graph;
    ``rgb``: the graph takes 8-bit RGB images (scaled to [0, 1]): its input is on the image grid
    (exact for such pixels; the first conv requantizes to its own grid, which rounds the pixels as
    the fake-quant model does) and its residual sum too (see :func:`mobile_add`). A Y model's input
    goes on the image grid too when its anchor is a term of the image-grid output sum: with the
    residual conv output on a 1/255-step grid (:func:`residual_grid`) that sum is then exact.
    ``site_grids``: ``({layer: Grid}, {tensor: Grid})`` of a deployment model
    (:func:`src.export.deploy_sites.site_grids`): then every grid comes from them and the conv input
    grids, the ranges are not read, and an RGB output image after a Relu is on the image grid.
    ValueError for a Conv without quantizer, a layer of more than 8 bits, a tensor or layer without
    an observed range (or deployment grid), or a quantized layer not found as a Conv of the graph."""
    state = PlanState(model, qnet, output_ranges, tensor_ranges, rgb, site_grids)
    graph = model.graph
    for value in graph.input:
        if rgb or state.is_image_anchor_source(value.name):
            state.plan.mark_tensor(value.name, IMAGE_GRID, value.name + "_image")
    for node in graph.node:  # the calibrated grids first
        if node.op_type == "Conv":
            mobile_conv(node, state)
    for node in graph.node:
        if node.op_type == "Relu":
            mobile_relu(node, state)
    for value in graph.input:
        if state.plan.grid_of(value.name) is None:
            mobile_other(_Source(value.name), state)
    for node in graph.node:
        if node.op_type in ("Conv", "Relu"):
            continue
        MOBILE_RULES.get(node.op_type, mobile_other)(node, state)
    _require_all_layers(state)
    return state.plan


class _Source:  # pylint: disable=too-few-public-methods
    """A graph input seen as the output of a node (for :func:`mobile_other`)."""
    op_type = "input"

    def __init__(self, name):
        self.output = [name]


def _require_all_layers(state):
    missing = sorted(set(state.layers) - state.done)
    if missing:
        raise ValueError(f"quantized layers not found as Conv nodes in the ONNX graph: {', '.join(missing)}")


__all__ = ["Grid", "ActivationMark", "ConvMark", "QDQPlan", "plan_desktop", "plan_mobile", "act_grid",
           "observed_grid", "weight_grid", "image_tail", "IMAGE_GRID", "DESKTOP_RULES", "MOBILE_RULES"]
