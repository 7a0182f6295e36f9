"""ONNX -> ORT format (the file ORT-Mobile loads), by onnxruntime's own converter."""
import contextlib
import glob
import io
import logging
import os
import pathlib


def onnx_to_ort(onnx_path, output_dir):
    """Convert the ONNX file at ``onnx_path`` with ``onnxruntime.tools.convert_onnx_models_to_ort``
    (fixed optimisation style, the graph optimised once for any device) into ``output_dir``;
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
                                       optimization_styles=[OptimizationStyle.Fixed])
    finally:
        config_log.setLevel(previous)
    found = glob.glob(os.path.join(output_dir, "*.ort"))
    if len(found) != 1:
        raise ValueError(f"onnxruntime's ORT converter wrote {len(found)} .ort files for {onnx_path}")
    return found[0]


__all__ = ["onnx_to_ort"]
