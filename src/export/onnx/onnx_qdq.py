"""Real int8 ONNX (desktop profile): the float graph with QuantizeLinear/DequantizeLinear from the calibrated bounds.

The work is split into passes (:mod:`src.export.onnx.passes`): planning the grids
(:mod:`src.export.onnx.qdq_plan`), writing the nodes (:mod:`src.export.onnx.qdq_writer`) and the
rewrites (:mod:`src.export.onnx.qdq_rewrites`, :mod:`src.export.onnx.onnx_subpixel`). What the
desktop int8 graph holds:

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
README), so such int8 convs get zero filters (:func:`src.export.onnx.qdq_rewrites.pad_conv_channels`, exact), unless
they are sub-pixel output convs, which :mod:`src.export.onnx.onnx_subpixel` rewrites first.
Convs with few input channels (the image-facing first conv) are slow in int8 too,
but cannot simply be left float: given a DQ input and a Q output, onnxruntime
quantizes float weights itself (per tensor) and fuses anyway, which cost 0.05 dB on
ABPN x3 Set5 when tried.
"""
import os
import tempfile

import numpy as np
import onnx

from src.quantlib.quant_layers import quant_layers
from src.utils.hooks import forward_hooks
from src.export.onnx.passes import ExportContext, passes_from, run_passes
from src.quantlib.deploy import is_deployment
from src.runtime.sessions import ort_session

INTEGER_KERNELS = ("QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger", "QLinearAdd")


def output_ranges_for(qnet, inputs, target):
    """The conv output ranges an int8 graph of ``qnet`` needs on profile ``target``: None for a deployment
    model on the mobile profile (its sites carry every grid), else observed on ``inputs`` (float32 NCHW in
    [0, 1]; :func:`observe_output_ranges`). The one rule for the default ranges: the exporter and
    :func:`src.export.onnx.profiles.build_onnx` (hence the TFLite writer) call it."""
    if target == "mobile" and is_deployment(qnet):
        return None
    return observe_output_ranges(qnet, inputs)


def observe_output_ranges(qnet, inputs):
    """{layer name: (min, max)} of every quantized layer's output over ``inputs`` (PyNative, hooks)."""
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    ranges = {}

    def hook_for(name):
        def hook(_cell, _inputs, output):
            out = output.asnumpy()
            lo, hi = ranges.get(name, (np.inf, -np.inf))
            ranges[name] = (min(lo, float(out.min())), max(hi, float(out.max())))
        return hook
    with forward_hooks([(layer, hook_for(name)) for name, layer in quant_layers(qnet)]):
        for x in inputs:
            qnet(ms.Tensor(x))
    return ranges


def quantize_onnx(float_model, qnet, output_ranges=None, quantize_last=True):
    """Desktop int8 QDQ ModelProto from the float ModelProto (dynamic H/W, opset 13, as
    :func:`src.export.onnx.onnx_float.float_onnx` writes it) of the same network and the calibrated
    ``qnet``: the int8 passes of the desktop profile (:data:`src.export.onnx.passes.PROFILES`)."""
    model = onnx.ModelProto()
    model.CopyFrom(float_model)
    ctx = ExportContext(quant="int8", qnet=qnet, output_ranges=output_ranges, quantize_last=quantize_last,
                        n_colors=qnet.n_colors)
    return run_passes(model, passes_from("desktop", "plan_qdq"), ctx)


def integer_kernels(path):
    """{op type: count} of the integer kernels (:data:`INTEGER_KERNELS`, e.g. ``QLinearConv``) in
    onnxruntime's optimised graph (CPU provider, default level) of the .onnx file at ``path``: how
    many Q/DQ groups onnxruntime fused. onnxruntime's own errors pass through."""
    with tempfile.TemporaryDirectory() as tmp:
        optimized = os.path.join(tmp, "optimized.onnx")
        ort_session(path, optimized_path=optimized)
        graph = onnx.load(optimized).graph
    counts = {}
    for node in graph.node:
        if node.op_type in INTEGER_KERNELS:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


__all__ = ["quantize_onnx", "integer_kernels", "observe_output_ranges", "output_ranges_for", "INTEGER_KERNELS"]
