"""The mobile-profile ONNX graph as a TensorFlow computation in NHWC, for the TFLite converter.

The input is the fixed-shape ModelProto of :func:`src.export.onnx.profiles.build_onnx` with
``target="mobile"``: only ``Conv``, ``Relu``, ``PRelu``, ``Add``, ``Concat``, DCR
``DepthToSpace``, ``Clip``/``Min``/``Max``, ``QuantizeLinear``/``DequantizeLinear``
(and ``Identity``) over initializers. Any other op raises ValueError naming it.

Layout: ONNX tensors are NCHW; every 4-D tensor here is NHWC (TFLite's layout), so the
graph takes ``1 x H x W x C`` float32 and returns ``1 x rH x rW x C``. Conv weights go
from OIHW to HWIO, channel axes (Concat) from 1 to 3; TF's ``depth_to_space`` on NHWC is
the DCR order of ONNX's default ``DepthToSpace``.

Quantized graphs (``QuantizeLinear -> DequantizeLinear`` pairs) become a
quantization-aware-training graph whose fake-quant ops carry the project's grids, so
the converter takes those ranges instead of calibrating:

- activation ``Q -> DQ`` with scale ``s`` and uint8 zero point ``z``:
  ``fake_quant_with_min_max_vars(min=-z s, max=(255 - z) s, num_bits=8)``. TF nudges
  min/max onto a grid with zero point ``round(-min / s) = z`` and step ``s``, so the
  converter's int8 tensor has scale ``s`` and zero point ``z - 128`` (the same integers
  shifted);
- weight ``DequantizeLinear`` (int8, per output channel, zero point 0, scale ``s_c``):
  the dequantised HWIO weight under ``fake_quant_with_min_max_vars_per_channel(min=-127 s_c,
  max=127 s_c, narrow_range=True)`` (scale ``s_c``, zero point 0; the values are already on
  that grid, so the converter writes the same int8 weights);
- bias ``DequantizeLinear`` (int32, scale ``s_in s_c``): the float bias ``b_q s_in s_c``; the
  converter recomputes ``round(b / (s_in s_c))`` = ``b_q`` (tests compare them).

PReLU: LiteRT's XNNPACK delegate runs PRELU in float only (also MAXIMUM / MINIMUM: an int8
PRELU, MAXIMUM or MINIMUM is left to the builtin kernels; LEAKY_RELU is taken in int8 but has
one slope per tensor), so in a quantized graph ``PReLU(y) = relu(y) - a relu(-y)`` is written
with convs XNNPACK runs in int8, two ops per PReLU:

- when ``y`` is the output of a quantized conv that nothing else reads (ECBSR, SESR), that conv
  writes ``2C`` channels ``[relu(y), relu(-k y)]``, ``k = high / -low`` of ``y``'s grid: weights
  ``[W; -k W]`` at per-channel scales ``[s; k s]`` (the calibrated int8 weights, negated),
  int32 biases ``[b_q; -b_q]``, a fused ReLU, output grid ``[0, high]``. Each half gets 8 bits
  over its own side instead of ``y``'s 8 bits over ``[low, high]`` (``y``'s own grid is not a
  grid of the fake-quant model, which rounds only conv inputs: this extra rounding cost ECBSR
  0.10 dB on Set5);
- otherwise ``[relu(y), relu(-y)]`` from one 1x1 conv ``C -> 2C``, weights ``(I; -I)``, fused
  ReLU, on ``y``'s step with zero point -128 (exact: both halves lie in ``[0, 255 step]``);

then one 1x1 conv ``2C -> C`` with per-output-channel weights ``(1, -a_c / k)`` at scale
``max(1, |a_c / k|) / 127``, rounded once onto the PReLU output grid (the calibrated input grid
of the next conv). The slope is held to 1/127 of ``max(1, |a_c / k|)``. Measured (1 x 360 x 640,
2 threads, int8 / float32 speed-up; Set5 int8 TFLite - fake-quant, W8A8 DBDC checkpoints):
the earlier depthwise ``relu(-y)`` + ``Add`` + ``Concat`` + mix (4 ops) ECBSR-M4C16 x3 1.49x
-0.136 dB, SESR-M5 x2 1.76x -0.119 dB; the ``(I; -I)`` split everywhere 1.88x / 2.22x with the
same integers out; this form 1.82x -0.033 dB / 2.14x -0.114 dB. Rejected: the mix folded into
the next conv over the 2C channels (1.67x / 2.01x, and that conv's input leaves its calibrated
grid), a depthwise conv with channel multiplier 2 for the split (XNNPACK's slow path: 0.8x),
two depthwise ReLU convs instead of the ``Add`` (1.42x / 1.74x), an ``a r`` depthwise conv then
``p - a r`` (an 8-bit grid for ``a r`` is too coarse for ECBSR's slopes near +-1: Set5 -3.6 dB).
A ``Clip`` whose input or output grid already lies inside its bounds is dropped in
quantized graphs (integer saturation clamps; XNNPACK has no int8 MINIMUM/RELU).
"""
import numpy as np
from onnx import numpy_helper

from src.export.onnx.onnx_graph import attr, consumers, producers
from src.quantlib.grid import grid_range

MAX_CONCAT_INPUTS = 4  # XNNPACK delegates CONCATENATION of 2..4 inputs (9 were left to the builtin kernel)
SUPPORTED_OPS = ("Conv", "Relu", "PRelu", "Add", "Concat", "DepthToSpace", "Clip", "Min", "Max",
                 "QuantizeLinear", "DequantizeLinear", "Identity")


class _Const:
    """A constant value (NCHW numpy) with the integer grid it came from (None for float constants)."""

    def __init__(self, value, scale=None, zero_point=None, quantized=None):
        self.value, self.scale, self.zero_point, self.quantized = value, scale, zero_point, quantized


def _bounds(scale, zero_point):
    """(min, max) of the 8-bit grid of a per-tensor (scale, zero point): what fake_quant needs."""
    scale = float(np.asarray(scale).reshape(-1)[0])
    zero = np.asarray(zero_point)
    z = int(zero.reshape(-1)[0])
    if zero.dtype == np.uint8:
        q_min, q_max = 0, 255
    elif zero.dtype == np.int8:
        q_min, q_max = -128, 127
    else:
        raise ValueError(f"activation zero point of type {zero.dtype}: the TFLite export takes uint8 or int8")
    return grid_range(scale, z, q_min, q_max)


def _same_grid(a, b):
    """True if the (min, max) grids ``a`` and ``b`` are the same up to float32 rounding (the image
    grid of the plan is 255 x float32(1/255) = 1.00000006 wide, the uint8 IO grid exactly 1)."""
    return a is not None and b is not None and bool(np.allclose(a, b, rtol=1e-6, atol=1e-9))


def _same_padding(pads, kernel, strides, dilations, in_hw):
    """True if ONNX ``pads`` (top, left, bottom, right) are what TF's SAME padding adds."""
    for i in range(2):
        size, k, s, d = in_hw[i], kernel[i], strides[i], dilations[i]
        effective = (k - 1) * d + 1
        out = -(-size // s)
        total = max((out - 1) * s + effective - size, 0)
        if (pads[i], pads[i + 2]) != (total // 2, total - total // 2):
            return False
    return True


class Translator:
    """Builds the TF ops of an ONNX mobile graph; call :meth:`__call__` inside a ``tf.function``.

    ``model``: onnx ModelProto, fixed shape ``N x C x H x W``, one input and one output.
    ``quantized`` is True when the graph holds QuantizeLinear/DequantizeLinear nodes; ``image_io``
    (quantized graphs) puts the input and output on the 8-bit image grid (scale 1/255, zero point
    0). ``input_shape`` is the NCHW input shape, ``nhwc_shape`` the TF one. ValueError at
    construction for a graph with other than one input and one output, a non-fixed or non-4-D
    input, or an op outside :data:`SUPPORTED_OPS`; while building (:meth:`__call__`) for a graph
    the TFLite int8 spec cannot express (asymmetric or -128 weights, non-constant weights or
    slopes, unsupported attributes; see the module docstring).
    """

    def __init__(self, model, image_io=False):
        graph = model.graph
        if len(graph.input) != 1 or len(graph.output) != 1:
            raise ValueError("the TFLite translation takes a graph with one input and one output")
        dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
        if len(dims) != 4 or min(dims) < 1:
            raise ValueError(f"the TFLite translation needs a fixed 4-D input shape, got {dims} "
                             "(build the graph with the mobile profile)")
        unknown = sorted({n.op_type for n in graph.node} - set(SUPPORTED_OPS))
        if unknown:
            raise ValueError(f"the ONNX graph holds {', '.join(unknown)}, which the TFLite translation does not take "
                             f"(a mobile-profile graph has only {', '.join(SUPPORTED_OPS)})")
        self.model = model
        self.image_io = bool(image_io)
        self.input_shape = tuple(dims)  # NCHW
        self.nhwc_shape = (dims[0], dims[2], dims[3], dims[1])
        self.quantized = any(n.op_type == "QuantizeLinear" for n in graph.node)
        self.inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}

    # -- graph walk ---------------------------------------------------------------------------
    def __call__(self, x):
        """NHWC float32 tensor ``1 x H x W x C`` in [0, 1] -> NHWC float32 tensor ``1 x rH x rW x C``
        (TF ops; call under a ``tf.function``). ValueError for a node it cannot translate and for a
        graph output that is a constant or a quantized tensor without DequantizeLinear."""
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        self.tf = tf
        graph = self.model.graph
        self.values = {graph.input[0].name: x}   # name -> TF tensor (NHWC)
        self.grids = {}      # name -> (min, max) of the activation grid the tensor is on
        self.clipped = {}    # name -> (pre-clip tensor, low, high): a Clip a later grid may absorb
        self.pending = {}    # QuantizeLinear output -> (input name, min, max)
        self.dq_source = {}  # DequantizeLinear output of an activation -> its QuantizeLinear's input
        self.conv_inputs = {}  # quantized group-1 Conv output -> (input, weight, bias, strides, padding, dilations)
        self.producers, self.readers = producers(graph), consumers(graph)
        self.consts = {name: _Const(value) for name, value in self.inits.items()}
        if self.image_io:  # 8-bit image bytes in: the input tensor on the image grid (requantised where needed)
            self.values[graph.input[0].name] = self._fake_quant(x, 0.0, 1.0)
            self.grids[graph.input[0].name] = (0.0, 1.0)
        for node in graph.node:
            handler = getattr(self, "_op_" + node.op_type)
            handler(node)
        out = graph.output[0].name
        if out not in self.values:
            raise ValueError(f"the graph output {out} is a constant or a quantized tensor without DequantizeLinear")
        if self.image_io and not _same_grid(self.grids.get(out), (0.0, 1.0)):  # onto the image grid
            tensor = self.values[out]
            return self._fake_quant(self._identity_conv(tensor) if out in self.grids else tensor, 0.0, 1.0)
        return self.values[out]

    def _value(self, name):
        if name in self.values:
            return self.values[name]
        if name in self.consts:
            const = self.consts[name]
            value = const.value
            if value.ndim == 4:
                value = value.transpose(0, 2, 3, 1)
            elif value.ndim == 3:  # (C, 1, 1) broadcast over H, W
                value = value.transpose(1, 2, 0)
            return self.tf.constant(value.astype(np.float32))
        raise ValueError(f"tensor {name} is read before it is written (the graph is not in topological order)")

    def _set(self, node, tensor, grid=None):
        self.values[node.output[0]] = tensor
        if grid is not None:
            self.grids[node.output[0]] = grid

    def _identity_conv(self, tensor):
        """``tensor`` through a 1x1 depthwise conv of weight 1 (int8 127 at scale 1/127): an integer
        requantisation between two grids that XNNPACK runs (two fake-quant ops in a row become a
        float DEQUANTIZE -> QUANTIZE pair)."""
        channels = int(tensor.shape[3])
        ones = np.ones(channels, np.float32)
        return self.tf.nn.depthwise_conv2d(tensor, self._per_channel(ones.reshape(1, 1, channels, 1), ones / 127.0),
                                           [1, 1, 1, 1], "VALID")

    def _fake_quant(self, tensor, low, high):
        return self.tf.quantization.fake_quant_with_min_max_vars(tensor, min=float(low), max=float(high),
                                                                 num_bits=8, narrow_range=False)

    # -- quantization -------------------------------------------------------------------------
    def _op_QuantizeLinear(self, node):
        if node.input[0] in self.consts:
            raise ValueError(f"QuantizeLinear {node.name} of a constant: quantize weights offline")
        scale, zero = self.inits.get(node.input[1]), self.inits.get(node.input[2]) if len(node.input) > 2 else None
        if scale is None or zero is None or scale.size != 1:
            raise ValueError(f"QuantizeLinear {node.name}: activations need a constant per-tensor scale and zero point")
        low, high = _bounds(scale, zero)
        self.pending[node.output[0]] = (node.input[0], low, high, scale.reshape(-1)[0], zero.reshape(-1)[0])

    def _op_DequantizeLinear(self, node):
        source = node.input[0]
        scale = self.inits.get(node.input[1])
        zero = self.inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if scale is None:
            raise ValueError(f"DequantizeLinear {node.name}: the scale must be a constant")
        if source in self.inits:  # a weight or bias: dequantise offline, remember its grid
            q = self.inits[source]
            z = np.zeros_like(q) if zero is None else zero
            axis = attr(node, "axis", 1)
            shape = [1] * q.ndim
            if scale.size > 1:
                shape[axis] = -1
            real = (q.astype(np.float64) - np.reshape(z, shape)) * np.reshape(scale, shape)
            self.consts[node.output[0]] = _Const(real.astype(np.float32), scale.astype(np.float32), z, q)
            return
        if source not in self.pending:
            raise ValueError(f"DequantizeLinear {node.name} reads {source}, which is not a QuantizeLinear output")
        name, low, high, q_scale, q_zero = self.pending[source]
        if scale.size != 1 or float(scale.reshape(-1)[0]) != float(q_scale) or zero is None \
                or zero.reshape(-1)[0] != q_zero:
            raise ValueError(f"DequantizeLinear {node.name} uses another grid than its QuantizeLinear")
        tensor = self.values.get(name)
        if tensor is None:
            raise ValueError(f"QuantizeLinear input {name} is not an activation")
        self.dq_source[node.output[0]] = name
        if name in self.clipped:  # Clip -> Q/DQ inside the clip bounds: saturation clamps already
            pre, c_low, c_high = self.clipped[name]
            if c_low <= low + 1e-7 and high <= c_high + 1e-7:
                tensor = pre
        previous = self.grids.get(name)
        if _same_grid(previous, (low, high)):  # already on this grid: nothing to round
            self._set(node, tensor, previous)
            return
        if previous is not None:  # a requantisation: an integer op, not a float DEQUANTIZE -> QUANTIZE pair
            tensor = self._identity_conv(tensor)
        self._set(node, self._fake_quant(tensor, low, high), (low, high))

    # -- compute ------------------------------------------------------------------------------
    def _weight(self, name, depthwise=False):
        """HWIO (or HW x C x 1 for depthwise) TF weight, fake-quantized per output channel if it has a grid."""
        tf = self.tf
        const = self.consts.get(name)
        if const is None:
            raise ValueError(f"Conv weight {name} is not a constant")
        w = const.value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        if depthwise:
            w = w.transpose(0, 1, 3, 2)  # H W 1 C -> H W C 1
        if const.quantized is None:
            return tf.constant(w.astype(np.float32))
        if const.quantized.dtype != np.int8 or np.any(const.zero_point != 0):
            raise ValueError(f"Conv weight {name}: the TFLite export takes symmetric int8 weights (zero point 0)")
        if int(const.quantized.min()) < -127:
            raise ValueError(f"Conv weight {name} holds -128; TFLite int8 weights are narrow range [-127, 127]")
        scale = np.broadcast_to(const.scale.reshape(-1), (const.value.shape[0],)).astype(np.float32)
        return self._per_channel(w, scale)

    def _per_channel(self, w, scale):
        """Fake-quantized constant ``w`` (HWIO, or HW x C x 1 for depthwise), channel ``c`` of the output
        axis on the symmetric grid of step ``scale[c]`` (narrow range: integers -127..127)."""
        tf = self.tf
        limit = 127.0 * scale.astype(np.float64)
        depthwise = w.shape[3] == 1 and w.shape[2] == scale.size and scale.size > 1
        value = tf.constant((w.transpose(0, 1, 3, 2) if depthwise else w).astype(np.float32))
        out = tf.quantization.fake_quant_with_min_max_vars_per_channel(
            value, min=(-limit).astype(np.float32), max=limit.astype(np.float32), num_bits=8, narrow_range=True)
        return tf.transpose(out, (0, 1, 3, 2)) if depthwise else out

    def _const_input(self, node, index, what):
        """The :class:`_Const` at input ``index`` of ``node``; ValueError naming ``what`` (weight, bias,
        slope) if a node computes it."""
        const = self.consts.get(node.input[index])
        if const is None:
            raise ValueError(f"{node.op_type} {node.name}: the {what} must be a constant")
        return const

    def _op_Conv(self, node):
        tf = self.tf
        x = self._value(node.input[0])
        w_const = self._const_input(node, 1, "weight")
        out_ch, in_ch_per_group, kh, kw = w_const.value.shape
        group = attr(node, "group", 1)
        strides = list(attr(node, "strides", [1, 1]))
        dilations = list(attr(node, "dilations", [1, 1]))
        pads = list(attr(node, "pads", [0, 0, 0, 0]))
        if attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise ValueError(f"Conv {node.name}: auto_pad is not supported; write explicit pads")
        in_hw = x.shape[1:3]
        if pads == [0, 0, 0, 0]:
            padding = "VALID"
        elif _same_padding(pads, (kh, kw), strides, dilations, in_hw):
            padding = "SAME"
        else:
            x = tf.pad(x, [[0, 0], [pads[0], pads[2]], [pads[1], pads[3]], [0, 0]])
            padding = "VALID"
        in_channels = int(x.shape[3])
        if group == 1:
            y = tf.nn.conv2d(x, self._weight(node.input[1]), [1] + strides + [1], padding, dilations=dilations)
        elif group == in_channels == out_ch and in_ch_per_group == 1:
            y = tf.nn.depthwise_conv2d(x, self._weight(node.input[1], depthwise=True), [1] + strides + [1], padding,
                                       dilations=dilations)
        else:
            raise ValueError(f"Conv {node.name}: group {group} (only 1 or depthwise) is not supported")
        if len(node.input) > 2 and node.input[2]:
            bias = self._const_input(node, 2, "bias")
            y = tf.nn.bias_add(y, tf.constant(bias.value.reshape(-1).astype(np.float32)))
            if group == 1 and w_const.quantized is not None:
                self.conv_inputs[node.output[0]] = (x, w_const, bias.value.reshape(-1), [1] + strides + [1], padding,
                                                    dilations)
        self._set(node, y)

    def _op_Relu(self, node):
        self._set(node, self.tf.nn.relu(self._value(node.input[0])), self._relu_grid(node.input[0]))

    def _relu_grid(self, name):
        grid = self.grids.get(name)
        return None if grid is None else (max(grid[0], 0.0), max(grid[1], 0.0))

    def _op_PRelu(self, node):
        tf = self.tf
        x = self._value(node.input[0])
        slope = self._const_input(node, 1, "slope")
        channels = int(x.shape[3])
        a = np.broadcast_to(slope.value.reshape(-1), (channels,)).astype(np.float32) \
            if slope.value.size in (1, channels) else None
        if a is None:
            raise ValueError(f"PRelu {node.name}: slope of shape {slope.value.shape} for {channels} channels")
        if not self.quantized:
            # Keras' PReLU pattern, which the converter turns into one PRELU op
            self._set(node, tf.nn.relu(x) + tf.constant(-a.reshape(1, 1, -1)) * tf.nn.relu(-x))
            return
        grid = self.grids.get(node.input[0])
        if grid is None:
            raise ValueError(f"PRelu {node.name}: its input is not quantized (a QuantizeLinear/DequantizeLinear "
                             "pair must come before it in an int8 graph)")
        low, high = grid
        producer = self._sole_conv_producer(node.input[0])
        if producer is not None and low < 0 < high:
            # the conv writes [relu(y), relu(-k y)], k = high / -low, from its int32 sums: each half
            # on [0, high] (full 8 bits over its own side) instead of y on [low, high]
            k = high / -low
            pair = self._conv_split(producer, k, high)
            a = a / k
        else:
            # [relu(x), relu(-x)] from one 1x1 conv C -> 2C, weights (I; -I), fused ReLU, on x's step
            # with zero point -128: exact (both halves lie in [0, 255 step])
            eye = np.eye(channels, dtype=np.float32)
            split = np.concatenate([eye, -eye], 1).reshape(1, 1, channels, 2 * channels)
            pair = tf.nn.relu(tf.nn.conv2d(x, self._per_channel(split, np.full(2 * channels, 1 / 127.0, np.float32)),
                                           [1, 1, 1, 1], "VALID"))
            pair = self._fake_quant(pair, 0.0, high - low)
        # one 1x1 conv 2C -> C: output channel c = relu(x_c) - a_c relu(-x_c), rounded once
        mix = np.zeros((1, 1, 2 * channels, channels), np.float32)
        mix[0, 0, np.arange(channels), np.arange(channels)] = 1.0
        mix[0, 0, channels + np.arange(channels), np.arange(channels)] = -a
        scale = np.maximum(np.abs(a), 1.0).astype(np.float32) / 127.0
        self._set(node, tf.nn.conv2d(pair, self._per_channel(mix, scale), [1, 1, 1, 1], "VALID"))

    def _sole_conv_producer(self, name):
        """The Conv node whose output reaches ``name`` through one QuantizeLinear -> DequantizeLinear
        pair and is read by nothing else (so the conv may write another tensor instead), else None."""
        q_name = self.dq_source.get(name)
        if q_name is None:
            return None
        conv = self.producers.get(q_name)
        if conv is None or conv.op_type != "Conv" or conv.output[0] not in self.conv_inputs:
            return None
        q_nodes = self.readers.get(q_name, [])
        if len(q_nodes) != 1 or len(self.readers.get(q_nodes[0].output[0], [])) != 1:
            return None
        return conv if len(self.readers.get(name, [])) == 1 else None

    def _conv_split(self, conv, k, high):
        """``conv`` recomputed with 2C outputs ``[y; -k y]`` (weights ``[W; -k W]`` at per-channel scales
        ``[s; k s]``, the same integers negated; biases ``[b; -k b]``, the same int32 values negated),
        fused ReLU, on the grid ``[0, high]``: ``[relu(y), relu(-k y)]``."""
        tf = self.tf
        x, w_const, bias, strides, padding, dilations = self.conv_inputs[conv.output[0]]
        w = w_const.value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        scale = np.broadcast_to(w_const.scale.reshape(-1), (w.shape[3],)).astype(np.float64)
        weight = self._per_channel(np.concatenate([w, -k * w], 3).astype(np.float32),
                                   np.concatenate([scale, k * scale]).astype(np.float32))
        y = tf.nn.conv2d(x, weight, strides, padding, dilations=dilations)
        y = tf.nn.bias_add(y, tf.constant(np.concatenate([bias, -k * bias]).astype(np.float32)))
        return self._fake_quant(tf.nn.relu(y), 0.0, high)

    def _binary(self, node, fn):
        a, b = (self._value(name) for name in node.input[:2])
        self._set(node, fn(a, b))

    def _op_Add(self, node):
        self._binary(node, self.tf.add)

    def _op_Min(self, node):
        self._binary(node, self.tf.minimum)

    def _op_Max(self, node):
        self._binary(node, self.tf.maximum)

    def _op_Identity(self, node):
        self._set(node, self._value(node.input[0]), self.grids.get(node.input[0]))

    def _op_Concat(self, node):
        axis = attr(node, "axis")
        tensors = [self._value(name) for name in node.input]
        rank = len(tensors[0].shape)
        axis = axis % rank
        if rank == 4:
            axis = (0, 3, 1, 2)[axis]
        grids = {self.grids.get(name) for name in node.input}
        self._set(node, self._concat(tensors, axis), grids.pop() if len(grids) == 1 else None)

    def _concat(self, tensors, axis):
        """Concatenation as a tree of at most MAX_CONCAT_INPUTS inputs per op (XNNPACK's limit; ABPN's
        anchor at x3 concatenates 9 copies of the input)."""
        while len(tensors) > MAX_CONCAT_INPUTS:
            tensors = [self.tf.concat(tensors[i:i + MAX_CONCAT_INPUTS], axis) if len(tensors[i:i + MAX_CONCAT_INPUTS]) > 1
                       else tensors[i] for i in range(0, len(tensors), MAX_CONCAT_INPUTS)]
        return self.tf.concat(tensors, axis) if len(tensors) > 1 else tensors[0]

    def _op_DepthToSpace(self, node):
        mode = attr(node, "mode", b"DCR")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode != "DCR":
            raise ValueError(f"DepthToSpace {node.name} in {mode} mode: TFLite's DEPTH_TO_SPACE is DCR")
        self._set(node, self.tf.nn.depth_to_space(self._value(node.input[0]), attr(node, "blocksize")),
                  self.grids.get(node.input[0]))

    def _op_Clip(self, node):
        bounds = []
        for i, default in ((1, -np.inf), (2, np.inf)):
            if len(node.input) > i and node.input[i]:
                const = self.consts.get(node.input[i])
                if const is None or const.value.size != 1:
                    raise ValueError(f"Clip {node.name}: the bounds must be scalar constants")
                bounds.append(float(const.value.reshape(-1)[0]))
            else:
                bounds.append(default)
        low, high = bounds
        x = self._value(node.input[0])
        grid = self.grids.get(node.input[0])
        if self.quantized and grid is not None and low <= grid[0] + 1e-7 and grid[1] <= high + 1e-7:
            self._set(node, x, grid)  # the integer tensor cannot leave [low, high]
            return
        y = self.tf.clip_by_value(x, low, high)
        self._set(node, y)
        if self.quantized:
            self.clipped[node.output[0]] = (x, low, high)


def tf_function(model, image_io=False):
    """``(tf.function, Translator)`` computing ``model`` on a fixed NHWC float32 input; ``image_io``
    (quantized graphs) puts the input and output on the 8-bit image grid (scale 1/255, zero point 0,
    requantised to and from the graph's own grids) for a uint8-image file. The function's input is
    named ``image`` with the translator's ``nhwc_shape``. ValueError as :class:`Translator`;
    ImportError without TensorFlow (callers go through :func:`src.export.tflite.tflite_convert.tensorflow`)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    translator = Translator(model, image_io)

    @tf.function(input_signature=[tf.TensorSpec(translator.nhwc_shape, tf.float32, name="image")])
    def run(image):
        return translator(image)
    return run, translator
