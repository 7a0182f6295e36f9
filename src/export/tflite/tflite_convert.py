"""Mobile-profile ONNX graph -> TFLite bytes with TensorFlow's maintained converter.

Route: :mod:`src.export.tflite.tflite_graph` rewrites the fixed-shape ONNX graph as a TF
function in NHWC (fake-quant ops at the project's grids for an int8 graph) and
``tf.lite.TFLiteConverter.from_concrete_functions`` converts it:

- ``float32``: no optimisation; every op a float builtin;
- ``float16``: ``Optimize.DEFAULT`` with ``supported_types=[float16]``: float16 weights,
  float32 compute (LiteRT dequantises them once at load);
- ``int8``: ``Optimize.DEFAULT`` on the fake-quant graph: a quantization-aware-training
  conversion that takes every range from the graph (no representative dataset, so the
  converter cannot re-calibrate). Per-channel int8 weights, int32 biases, int8
  activations. ``io_dtype`` ``float32`` (default) keeps a float32 input and output around
  the integer graph (QUANTIZE first, DEQUANTIZE last); ``uint8`` makes them uint8 image
  bytes (scale 1/255, zero point 0): the graph's input and output grids must be the 8-bit
  image grid, so no requantisation is added.

Why not onnx2tf: it crashes on the anchor's ``Tile`` and turns QDQ graphs into Flex
(select-TF) ops the plain interpreter refuses; ``ai-edge-quantizer`` would need our grids
re-expressed as its recipe. The fake-quant route keeps every range and per-channel scale
exactly (tests compare the file's quantization parameters with the project's grids).
The resulting file follows the TFLite 8-bit quantization spec (tensorflow.org/lite/performance/
quantization_spec): int8 symmetric per-channel weights (narrow range), int32 biases, int8
asymmetric activations.
"""
import numpy as np

from src.utils.native_stderr import import_tensorflow_quietly
from src.errors import UserError
from src.export.tflite.tflite_graph import tf_function
from src.runtime.metadata import attach_tflite_metadata
from src.runtime.tflite_check import io_quantization
from src.utils.atomic import atomic_target

QUANTS = ("none", "float16", "int8")
IO_DTYPES = ("float32", "uint8")
IMAGE_SCALE = np.float32(1.0 / 255.0)


def tensorflow():
    """The ``tensorflow`` module; ValueError naming requirements-mobile.txt when it is not installed.
    TensorFlow's C++ start-up lines (oneDNN notices, a CUDA probe on CPU-only machines, MLIR
    progress) are silenced unless ``TF_CPP_MIN_LOG_LEVEL`` is set to 0 or 1 (logs asked for):
    the first import writes some of them before any log level is read (also with level 3, as
    a child process of one that imported TensorFlow inherits), so its stderr goes to /dev/null."""
    try:
        tf = import_tensorflow_quietly()
    except ImportError:
        raise UserError("--file_format TFLITE needs TensorFlow's TFLite converter, which is not installed: "
                         "pip install -r requirements-mobile.txt") from None
    return tf


def _quiet(tf):
    import logging  # pylint: disable=import-outside-toplevel
    tf.get_logger().setLevel(logging.ERROR)
    tf.autograph.set_verbosity(0)


def convert(model, quant="none", io_dtype="float32"):
    """TFLite flatbuffer bytes of a mobile-profile ONNX ``model`` (fixed 1 x C x H x W).

    ``quant``: ``none`` (float32), ``float16`` (float16 weights) or ``int8`` (the graph must
    hold QuantizeLinear/DequantizeLinear nodes). ``io_dtype``: ``float32`` or ``uint8``
    (int8 only). The file's input is ``1 x H x W x C`` (NHWC) float32 in [0, 1] (or uint8
    0..255), its output ``1 x rH x rW x C``. Raises ValueError for an op the translation
    does not take, a float graph asked for int8 (or the reverse), a uint8 request whose
    graph input/output grid is not the image grid, and a conversion TensorFlow refuses.
    """
    if quant not in QUANTS:
        raise UserError(f"TFLite quant must be one of {', '.join(QUANTS)}, not '{quant}'")
    if io_dtype not in IO_DTYPES:
        raise UserError(f"io_dtype must be float32 or uint8, not '{io_dtype}'")
    if io_dtype == "uint8" and quant != "int8":
        raise UserError("--io_dtype uint8 is for full-integer files: use --quant int8 (a float file takes float32)")
    tf = tensorflow()
    _quiet(tf)
    run, translator = tf_function(model, image_io=io_dtype == "uint8")
    if translator.quantized != (quant == "int8"):
        raise UserError("an int8 TFLite file needs a quantized (QuantizeLinear/DequantizeLinear) graph"
                         if quant == "int8" else "a float TFLite file needs a float graph, not a quantized one")
    concrete = run.get_concrete_function()
    module = tf.Module()
    module.run = run
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
    if quant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quant == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if io_dtype == "uint8":
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.uint8
    try:
        data = converter.convert()
    except Exception as exc:  # the converter raises ConverterError and others with multi-line MLIR logs
        first = next((line for line in str(exc).splitlines() if "error" in line.lower()), str(exc).splitlines()[0])
        raise UserError(f"TensorFlow's TFLite converter refused the graph at input "
                         f"{list(translator.nhwc_shape)}: {first.strip()[:300]}") from None
    if io_dtype == "uint8":
        _require_image_io(data)
    return bytes(data)


def _require_image_io(data):
    for role, (dtype, scale, zero) in io_quantization(data).items():
        if dtype != "UINT8" or not np.isclose(scale, IMAGE_SCALE, rtol=1e-6) or zero != 0:
            raise UserError(f"--io_dtype uint8 needs the graph {role} on the 8-bit image grid (scale 1/255, zero "
                             f"point 0); the converter gave {dtype} scale {scale:.6g} zero point {zero}: use "
                             "--io_dtype float32")


def write_tflite(data, path, metadata=None):
    """Atomic write of TFLite bytes to ``path``; ``metadata`` (``{key: str}``) is stored inside first
    (:func:`src.runtime.metadata.attach_tflite_metadata`). Returns ``path``; OSError from the write
    passes through and leaves no partial file."""
    if metadata:
        data = attach_tflite_metadata(data, metadata)
    with atomic_target(path, suffix=".tflite") as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return path
