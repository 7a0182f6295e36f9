"""ONNX float export: MindSpore's exporter (fixed shape), then dynamic H/W and opset 13.

``mindspore.export(..., file_format="ONNX")`` writes the traced shape into the
graph input and output and into ``value_info``. The height and width of the
input and output are renamed to symbolic dimensions (``height``/``width``,
``out_height``/``out_width``) and the stale intermediate shapes dropped, so one
file serves every image size. A graph that bakes a size into a constant (for
example a Reshape) would then fail on another size: the exporter runs the file at
two sizes (:func:`max_diff`) to catch that. Opset 13 is needed for per-channel
Quantize/DequantizeLinear in the int8 variant (ONNX operator docs, QuantizeLinear-13).
"""
import logging
import os
import tempfile
import time

import numpy as np
import onnx
from onnx import version_converter

import mindspore as ms
from mindspore import Tensor

from src.runtime.sessions import run_onnx
from src.utils.mindspore_log import mindspore_log_level
from src.errors import UserError
from src.export.onnx.onnx_subpixel import strided_subpixel_convs
from src.runtime.metadata import attach_onnx_metadata
from src.utils.atomic import atomic_target

OPSET = 13


def mark_dynamic_hw(model):
    """Make H and W of the graph input (``N x C x height x width``, NCHW) and output
    (``N x C x out_height x out_width``) symbolic and drop ``value_info`` (in place; returns
    ``model``). ValueError if the input or output is not 4-D."""
    for value, names in ((model.graph.input[0], ("height", "width")),
                         (model.graph.output[0], ("out_height", "out_width"))):
        dims = value.type.tensor_type.shape.dim
        if len(dims) != 4:
            raise ValueError(f"expected a 4-D graph {value.name}, got {len(dims)} dimensions")
        for dim, name in zip(dims[2:], names):
            dim.ClearField("dim_value")
            dim.dim_param = name
    del model.graph.value_info[:]
    return model


def traced_onnx(net, example):
    """The ONNX model ``mindspore.export(net, Tensor(example), file_format="ONNX")`` writes, as a
    ModelProto: ``example`` is a float32 NCHW array (an image in [0, 1]) whose shape is traced
    into the graph's input and output. ``net`` is put in inference mode. OSError naming the
    temporary folder when the disk there is full; MindSpore's own export errors pass through."""
    net.set_train(False)
    # MindSpore's ONNX exporter edits the compiled graph it caches per cell (keyed by the cell's
    # creation time), so a second export of the same cell fails ("i: 3 out of range" on a BiasAdd):
    # a new key makes it compile afresh.
    object.__setattr__(net, "_create_time", time.time_ns())
    with tempfile.TemporaryDirectory() as tmp:
        stem = os.path.join(tmp, "net")
        # MindSpore 2.x logs a deprecation WARNING (mindspore.onnx.export) on every call: not the user's concern
        try:
            with mindspore_log_level(logging.ERROR):
                ms.export(net, Tensor(example), file_name=stem, file_format="ONNX")
        except OSError as exc:  # a full temporary disk: say which folder (MindSpore's write names no file)
            if exc.errno is None or exc.filename:
                raise
            raise OSError(exc.errno, f"{exc.strerror} in the temporary folder (set TMPDIR to another disk)",
                          os.path.dirname(tmp)) from None
        return onnx.load(stem + ".onnx")


def float_onnx(net, example, optimize=False):
    """Float ModelProto of ``net`` traced at ``example`` (NCHW float32), with dynamic H/W
    (:func:`mark_dynamic_hw`) at opset 13, checked by ``onnx.checker`` (its ValidationError passes
    through); with ``optimize`` sub-pixel output convs are rewritten as strided convs
    (:mod:`src.export.onnx.onnx_subpixel`, exact). The int8 exporter takes the graph as traced (the
    default) and rewrites after quantizing."""
    model = traced_onnx(net, example)
    if model.opset_import[0].version < OPSET:
        model = version_converter.convert_version(model, OPSET)
    model = mark_dynamic_hw(model)
    onnx.checker.check_model(model)
    if optimize:
        model = optimized_float(model)
    return model


def optimized_float(model):
    """A copy of a float ModelProto with the exact graph rewrites of the float export applied
    (:func:`src.export.onnx.onnx_subpixel.strided_subpixel_convs`); ``model`` is not changed."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    strided_subpixel_convs(out)
    return out


def save_onnx(model, path, metadata=None):
    """Atomic write of a ModelProto to ``path`` (returned); ``metadata`` (``{key: str}``, see
    :mod:`src.runtime.metadata`) is stored in its ``metadata_props`` first (the ModelProto is
    changed in place). OSError from the write passes through, leaving no partial file."""
    if metadata:
        attach_onnx_metadata(model, metadata)
    with atomic_target(path, suffix=".onnx") as tmp:
        onnx.save(model, tmp)
    return path


def max_diff(session, net, inputs):
    """Max |ORT(x) - MindSpore(x)| over ``inputs`` (float32 NCHW arrays, the exporter's check image
    at two sizes to cover the dynamic H/W), as a float in the images' units ([0, 1]). ValueError
    if onnxruntime fails on an input or the two output shapes differ."""
    worst = 0.0
    for x in inputs:
        ref = net(Tensor(x)).asnumpy()
        try:
            out = run_onnx(session, x)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise UserError(f"onnxruntime failed on input {tuple(x.shape)}: {str(exc).splitlines()[0]}") from None
        if out.shape != ref.shape:
            raise UserError(f"ONNX output {out.shape} differs from MindSpore's {ref.shape} for {tuple(x.shape)}")
        worst = max(worst, float(np.abs(out - ref).max()))
    return worst
