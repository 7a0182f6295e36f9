"""Exported files as predictors' networks: .onnx, .ort, .mindir and .tflite files behave like a Cell for SRPredictor.

A runner takes and returns MindSpore Tensors (NCHW float in [0, 1]) and tells
``n_colors``, ``scale``, ``receptive_radius`` and ``peak_channels``, so
:class:`~src.engine.inference.SRPredictor` tiles, ensembles and handles Y-only
models for them as for a checkpoint. The values come from the file's metadata
(:mod:`src.runtime.metadata`, written by export.py), checked against the shapes
the file declares and by one probe run. A file exported before metadata was
written still runs: channels and scale come from its shapes or a probe run, the
receptive radius is measured on the file (:mod:`src.utils.file_probe`), and
:attr:`ExportedRunner.notice` says so.

Pixel range: this project's files take and give [0, 1]; other projects' files often work on
0..255 (the ABPN authors', MLPerf's). The runner feeds ``x * pixel_range`` and divides the output
by it. The range is never assumed for a file without SR metadata: an integer (uint8/int8) input
whose quantization spans 0..255 or 0..1 says it, and a test image confirms it; a float input is
decided by the test image alone (or ``pixel_range`` given by the user, checked against what the
file says). A file whose declared range the test image contradicts, or whose range cannot be
proven, is refused in one line.

Layout (NCHW or NHWC) is read from the file's input/output shapes
(:mod:`src.runtime.file_layout`), so a TFLite file's ``1 x H x W x C`` input is
fed transposed images and an ONNX file's ``1 x C x H x W`` is not. A file with a
fixed input size (the mobile export profile, e.g. 1 x 3 x 360 x 640) runs any
image in overlapping windows of that size (:mod:`src.runtime.fixed_tiles`), with
an overlap of the receptive radius (or ``tile_overlap``).

A file the runtime cannot read (random bytes, a truncated export, another format
with the extension) raises :class:`~src.runtime.metadata.ExportedModelError`, a
ValueError the entry scripts print as one line; a missing runtime package raises
:class:`~src.runtime.metadata.MissingRuntimeError` naming the requirements file.
"""
import os

from mindspore import Tensor

from src.runtime.metadata import ExportedModelError, missing_runtime, read_mindir_proto, unreadable
from src.runtime.runner_base import ExportedRunner, runtime_error_line
from src.errors import UserError
from src.runtime.sessions import load_mindir, ort_session
from src.runtime.tflite_runner import TFLiteRunner

EXTENSIONS = (".onnx", ".ort", ".mindir", ".tflite")


class OnnxRunner(ExportedRunner):
    """An ONNX or ORT-format (.ort) file run by onnxruntime (CPU); ``threads`` 0 lets onnxruntime choose."""

    FORMAT = "ONNX"

    def __init__(self, path, threads=0, tile_overlap=-1, pixel_range="auto"):
        if path.lower().endswith(".ort"):
            self.FORMAT = "ORT"
        try:
            import onnxruntime  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import  # availability check
        except ImportError:
            raise missing_runtime(f"running {path}", "onnxruntime", "requirements.txt") from None
        try:
            self.session = ort_session(path, threads)
        except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
            raise unreadable(path, self.FORMAT, runtime_error_line(exc)) from None
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.input_name = inp.name
        super().__init__(path, self.session.get_modelmeta().custom_metadata_map, inp.shape, out.shape, tile_overlap,
                         pixel_range)

    def invoke(self, x):
        return self.session.run(None, {self.input_name: x})[0]


def _mindir_shape(value_info):
    """Declared dims of a MindIR graph input/output (-1 = any), or None."""
    tensors = list(value_info.tensor)
    return list(tensors[0].dims) if tensors and tensors[0].dims else None


class MindIRRunner(ExportedRunner):
    """A MindIR file run by ``mindspore.load`` + ``nn.GraphCell``.

    MindSpore itself would run a fixed-shape MindIR at other sizes too; the
    runner keeps to the declared size (windows), as MindSpore Lite on a phone does.
    """

    FORMAT = "MindIR"

    def __init__(self, path, tile_overlap=-1, pixel_range="auto"):
        proto = read_mindir_proto(path)  # refuses what is not a MindIR graph before MindSpore's loader
        user_info = dict(proto.user_info)
        graph = proto.graph
        in_shape = _mindir_shape(graph.input[0]) if graph.input else None
        out_shape = _mindir_shape(graph.output[0]) if graph.output else None
        del proto, graph
        try:
            self.graph = load_mindir(path)
        except (RuntimeError, ValueError, TypeError) as exc:  # MindSpore: "Load MindIR failed."
            raise unreadable(path, self.FORMAT, runtime_error_line(exc)) from None
        super().__init__(path, user_info, in_shape, out_shape, tile_overlap, pixel_range)

    def invoke(self, x):
        return self.graph(Tensor(x)).asnumpy()


# flatbuffer file identifiers (bytes 4-8) of the formats whose files can say what they are
_FLATBUFFER_KINDS = {b"TFL3": ("a TFLite", ".tflite"), b"ORTM": ("an ORT", ".ort")}


def _misnamed(path):
    """(article and kind, extension) when the file's own identifier (TFLite ``TFL3``, ORT ``ORTM``) names another format than
    its extension; None otherwise or when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return None
    found = _FLATBUFFER_KINDS.get(head[4:8])
    return found if found and not path.lower().endswith(found[1]) else None


def open_exported(path, log=print, tile_overlap=-1, threads=0, pixel_range="auto"):
    """A runner for a .onnx, .ort, .mindir or .tflite file; ``log`` gets the notice of a file without metadata.

    ``pixel_range`` ('auto', '1' or '255'): the pixel values a file without SR metadata takes; 'auto'
    proves it on a test image (and against an integer input's quantization), else refuses.

    ``tile_overlap`` (LR pixels, -1 = the file's receptive radius) is the context
    around each window of a fixed-size file; ``threads`` (0 = the runtime's
    default; TFLite: 2) the CPU threads of onnxruntime / LiteRT.
    Raises ExportedModelError (a ValueError) for an unreadable file (a TFLite or
    ORT file under another extension: "rename it to ..."), for metadata that
    disagrees with the graph, MissingRuntimeError (a ValueError) when the
    runtime is not installed, ValueError for another extension.
    """
    lower = path.lower()
    try:
        if lower.endswith((".onnx", ".ort")):
            runner = OnnxRunner(path, threads, tile_overlap, pixel_range)
        elif lower.endswith(".mindir"):
            runner = MindIRRunner(path, tile_overlap, pixel_range)
        elif lower.endswith(".tflite"):
            runner = TFLiteRunner(path, threads or 2, tile_overlap, pixel_range)
        else:
            raise UserError(f"{path}: expected a .ckpt, .onnx, .ort, .mindir or .tflite file")
    except ExportedModelError:
        misnamed = _misnamed(path)
        if misnamed is None:
            raise
        kind, ext = misnamed
        raise ExportedModelError(f"{path} is {kind} file, not what its extension says: rename it to "
                                 f"{os.path.splitext(path)[0] + ext}") from None
    if runner.notice:
        log(runner.notice)
    return runner
