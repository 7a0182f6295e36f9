"""A .tflite file run by LiteRT's interpreter (``ai-edge-litert``) as a predictor's network.

LiteRT applies its default XNNPACK delegate to float and int8 graphs, the
delegate a phone's CPU path uses. Input and output may be float32, int8 or
uint8: a quantized tensor's (scale, zero point) convert between the runner's
float [0, 1] values and the file's integers (``q = round(x / scale) + zero``,
clipped to the type's range; ``x = (q - zero) * scale``). A uint8 pixel input
(scale 1/255, zero point 0) thus receives exactly the 8-bit image values. The
layout comes from the tensors' shapes (normally 1 x H x W x C, NHWC); the
``sr_metadata`` entry (:func:`src.runtime.metadata.read_tflite_metadata`) gives
scale, colours and receptive radius. A graph whose height/width are left open
(shape signature -1) is resized to each input.
"""
import numpy as np

from src.runtime.runner_base import ExportedRunner, runtime_error_line
from src.runtime.metadata import missing_runtime, read_tflite_metadata, unreadable
from src.utils.native_stderr import stderr_silenced
from src.errors import UserError


def _quantization(detail):
    """(scale, zero point) of a per-tensor quantized int8/uint8 tensor; None for float32."""
    if detail["dtype"] == np.float32:
        return None
    if detail["dtype"] not in (np.int8, np.uint8):
        raise UserError(f"tensor {detail['name']} is {np.dtype(detail['dtype']).name}, not float32, int8 or uint8")
    scale, zero = detail["quantization"]
    if not scale:
        raise UserError(f"{np.dtype(detail['dtype']).name} tensor {detail['name']} has no quantization scale")
    return float(scale), int(zero)


def quantize(x, dtype, scale, zero):
    """Float array -> ``dtype`` (int8 or uint8) with per-tensor ``scale`` and ``zero`` point; halves round away
    from zero (as LiteRT's QUANTIZE op)."""
    info = np.iinfo(dtype)
    v = np.asarray(x, np.float64) / scale
    return np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5) + zero, info.min, info.max).astype(dtype)


def dequantize(q, scale, zero):
    """Integer array -> float32 ``(q - zero) * scale``."""
    return ((q.astype(np.float64) - zero) * scale).astype(np.float32)


class TFLiteRunner(ExportedRunner):
    """A .tflite file on LiteRT's CPU interpreter (XNNPACK) with ``threads`` threads."""

    FORMAT = "TFLite"
    USUAL_LAYOUT = "NHWC"

    def __init__(self, path, threads=2, tile_overlap=-1, pixel_range="auto"):
        try:
            from ai_edge_litert.interpreter import Interpreter  # pylint: disable=import-outside-toplevel
        except ImportError:
            raise missing_runtime(f"running {path}", "ai-edge-litert") from None
        raw = read_tflite_metadata(path)  # refuses what is not a TFLite flatbuffer before the interpreter
        try:
            with stderr_silenced():  # LiteRT's "INFO: Created ... XNNPACK delegate" line; errors raise
                self.interpreter = Interpreter(model_path=path, num_threads=int(threads))
                self.interpreter.allocate_tensors()
            inp, out = self.interpreter.get_input_details(), self.interpreter.get_output_details()
            if len(inp) != 1 or len(out) != 1:
                raise UserError(f"{len(inp)} inputs and {len(out)} outputs, not one image in and one out")
            self.input, self.output = inp[0], out[0]
            self.in_q, self.out_q = _quantization(self.input), _quantization(self.output)
        except Exception as exc:  # LiteRT raises RuntimeError / ValueError with C++ text
            raise unreadable(path, self.FORMAT, runtime_error_line(exc)) from None
        self._resizable = bool(np.any(self.input["shape_signature"][1:3] < 0))
        in_shape = [d if d > 0 else None for d in self.input["shape_signature"]]
        out_shape = [d if d > 0 else None for d in self.output["shape_signature"]]
        super().__init__(path, raw, in_shape, out_shape, tile_overlap, pixel_range)

    @property
    def integer_output(self):
        return self.out_q is not None

    def declared_pixel_range(self):
        """0..255 or 0..1 when the integer input's (scale, zero point) spans that range within 5%: e.g. the
        ABPN authors' and MLPerf's uint8 input of scale 1.0 (pixels 0..255), export.py's of scale 1/255."""
        if self.in_q is None:
            return None, None
        scale, zero = self.in_q
        info = np.iinfo(self.input["dtype"])
        lo, hi = (info.min - zero) * scale, (info.max - zero) * scale
        for r in (255.0, 1.0):
            if abs(lo) <= 0.05 * r and abs(hi / r - 1.0) <= 0.05:
                words = (f"{np.dtype(self.input['dtype']).name} input (scale {scale:.6g}, zero point {zero}) spans "
                         f"{lo:.4g}..{hi:.4g}")
                return r, words
        return None, None

    @property
    def kind(self):
        """As :attr:`ExportedRunner.kind`, plus the integer IO types, e.g. ``"int8 TFLite (file, uint8 IO)"``."""
        base = super().kind
        io_types = {np.dtype(d["dtype"]).name for d in (self.input, self.output)}
        return base if io_types == {"float32"} else base[:-1] + f", {'/'.join(sorted(io_types))} IO)"

    def invoke(self, x):
        if self._resizable and tuple(x.shape) != tuple(self.input["shape"]):
            self.interpreter.resize_tensor_input(self.input["index"], list(x.shape))
            self.interpreter.allocate_tensors()
            self.input = self.interpreter.get_input_details()[0]
            self.output = self.interpreter.get_output_details()[0]
        if self.in_q is not None:
            x = quantize(x, self.input["dtype"], *self.in_q)
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output["index"])
        return dequantize(y, *self.out_q) if self.out_q is not None else y.copy()
