"""ONNX -> ORT format (the file ORT-Mobile loads), by onnxruntime's own converter.

The conversion uses onnxruntime's *runtime* optimisation style, the one its documentation gives
for NNAPI and CoreML: the file holds the graph after basic optimisations (the mobile graph's own
Conv / Relu / Add / Concat / DepthToSpace / Q / DQ nodes, which the delegates take) plus recorded
fusions that the CPU provider applies at load time to the nodes it runs. The *fixed* style
would bake x86-style fused kernels (``QLinearConv``, ``FusedConv``, NHWC ``Transpose``) into the
file, which NNAPI and CoreML do not take.
"""
import contextlib
import glob
import io
import logging
import os
import pathlib
from src.errors import UserError


def onnx_to_ort(onnx_path, output_dir):
    """Convert the ONNX file at ``onnx_path`` with ``onnxruntime.tools.convert_onnx_models_to_ort``
    (runtime optimisation style, see the module docstring) into ``output_dir``;
    returns the .ort path. The converter's progress lines (printed, and an INFO log line about
    its operator config file) are kept out of the export's output; its exceptions pass through.
    Raises ValueError if the converter writes nothing."""
    from onnxruntime.tools.convert_onnx_models_to_ort import (  # pylint: disable=import-outside-toplevel
        OptimizationStyle, convert_onnx_models_to_ort)
    os.makedirs(output_dir, exist_ok=True)
    config_log = logging.getLogger("ort_format_model.utils")  # onnxruntime.tools' logger, set to DEBUG
    previous = config_log.level
    config_log.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            convert_onnx_models_to_ort(pathlib.Path(onnx_path), output_dir=pathlib.Path(output_dir),
                                       optimization_styles=[OptimizationStyle.Runtime])
    finally:
        config_log.setLevel(previous)
    found = glob.glob(os.path.join(output_dir, "*.ort"))
    if len(found) != 1:
        raise ValueError(f"onnxruntime's ORT converter wrote {len(found)} .ort files for {onnx_path}")
    return found[0]


def ort_op_types(ort_path):
    """{"domain:op_type": count} of the nodes stored in the .ort file at ``ort_path`` (the graph a
    delegate is offered; recorded runtime fusions are not nodes). Read with onnxruntime's own
    flatbuffer bindings; ValueError if the file is not an ORT model."""
    from onnxruntime.tools.ort_format_model.ort_flatbuffers_py import fbs  # pylint: disable=import-outside-toplevel
    with open(ort_path, "rb") as handle:
        data = handle.read()
    if data[4:8] != b"ORTM":
        raise UserError(f"{ort_path} is not an ORT format model")
    graph = fbs.InferenceSession.InferenceSession.GetRootAsInferenceSession(data, 0).Model().Graph()
    counts = {}
    for i in range(graph.NodesLength()):
        node = graph.Nodes(i)
        key = f"{(node.Domain() or b'').decode()}:{node.OpType().decode()}"
        counts[key] = counts.get(key, 0) + 1
    return counts


__all__ = ["onnx_to_ort", "ort_op_types"]
