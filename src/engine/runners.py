"""Exported files as predictors' networks: MindIR and ONNX files behave like a Cell for SRPredictor.

A runner takes and returns MindSpore Tensors (NCHW float in [0, 1]) and tells
``n_colors``, ``scale``, ``receptive_radius`` and ``peak_channels``, so
:class:`~src.engine.inference.SRPredictor` tiles, ensembles and handles Y-only
models for them as for a checkpoint. The values come from the file's metadata
(:mod:`src.export.metadata`, written by export.py), checked by one probe run on
a small input. A file exported before metadata was written still runs: channels
and scale are found by probing, the receptive radius is assumed to be
:data:`ASSUMED_RADIUS`, and :attr:`_Runner.notice` says so.

A file the runtime cannot read (random bytes, a truncated export, another format
with the extension) raises :class:`~src.export.metadata.ExportedModelError`, a
ValueError the entry scripts print as one line.
"""
import re

import numpy as np
from mindspore import Tensor

from src.export.metadata import (ExportedModelError, default_peak_channels, parse_metadata, read_mindir_proto,
                                 unreadable)

PROBE = 16
ASSUMED_RADIUS = 16  # LR pixels of tile overlap for files without metadata (as before metadata existed)


def _first_line(exc, limit=160):
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : ", "", text)
    text = re.sub(r"Load model from .* failed:", "", text)
    text = re.sub(r"/\S+\.(cc|h):\d+ .*?\) (?=[A-Z])", "", text)  # onnxruntime's source line and C++ signature
    return text[:limit]


class _Runner:
    """Common part: metadata, probe, Tensor in/out. Subclasses set ``FORMAT`` and implement ``run``.

    Attributes: ``n_colors`` (1 or 3), ``scale``, ``receptive_radius`` (LR pixels,
    the tile overlap SRPredictor uses by default), ``peak_channels`` (channels per
    LR pixel for automatic tile sizes), ``metadata`` (the parsed dict, or None for
    a file exported without it) and ``notice`` (one line to show the user when
    values were assumed, else None).
    """

    FORMAT = ""

    def __init__(self, path, raw_metadata=None):
        self.path = path
        self.metadata = parse_metadata(raw_metadata, path)
        self.notice = None
        if self.metadata is None:
            self.n_colors, self.scale = self._probe()
            self.receptive_radius = ASSUMED_RADIUS
            self.peak_channels = default_peak_channels(self.scale)  # conservative: for automatic tile sizes
            self.notice = (f"note: {path} carries no SR metadata (exported before it was recorded): found x{self.scale} "
                           f"and {self.n_colors} colour(s) by a test run, and assume a receptive radius of "
                           f"{ASSUMED_RADIUS} LR pixels for the tile overlap, too small for deep models such as EDSR "
                           f"(36); re-export it with export.py or pass --tile_overlap")
            return
        self.n_colors, self.scale = self.metadata["n_colors"], self.metadata["scale"]
        self.receptive_radius = self.metadata["receptive_radius"]
        self.peak_channels = self.metadata["peak_channels"] or default_peak_channels(self.scale)
        self._check_metadata()

    def _probe(self):
        errors = []
        for channels in (3, 1):
            try:
                out = self.run(np.zeros((1, channels, PROBE, PROBE), np.float32))
            except Exception as exc:  # runtimes raise their own types for a wrong channel count
                errors.append(_first_line(exc))
                continue
            return channels, out.shape[-1] // PROBE
        raise ValueError(f"{self.path} does not run on a 1x3 or 1x1 channel image: {errors[-1]}")

    def _check_metadata(self):
        """One probe run with the recorded channel count: the graph must agree with its metadata."""
        try:
            out = self.run(np.zeros((1, self.n_colors, PROBE, PROBE), np.float32))
        except Exception as exc:  # runtimes raise their own types
            raise ExportedModelError(f"{self.path} does not run on the {self.n_colors}-channel input its metadata "
                                     f"records ({_first_line(exc)}); re-export it with export.py") from None
        expected = (1, self.n_colors, PROBE * self.scale, PROBE * self.scale)
        if tuple(out.shape) != expected:
            raise ExportedModelError(f"{self.path} turns a {PROBE}x{PROBE} input into {tuple(out.shape)}, not the "
                                     f"{expected} its metadata (x{self.scale}, {self.n_colors} colour(s)) records; "
                                     "re-export it with export.py")

    def run(self, x):
        raise NotImplementedError

    def __call__(self, x):
        return Tensor(self.run(x.asnumpy() if isinstance(x, Tensor) else x))

    def set_train(self, mode=False):
        return self

    def set_inputs(self, *inputs):
        return self


class OnnxRunner(_Runner):
    """An ONNX file run by onnxruntime (CPU); ``threads`` 0 lets onnxruntime choose."""

    FORMAT = "ONNX"

    def __init__(self, path, threads=0):
        from src.export.onnx_float import ort_session  # pylint: disable=import-outside-toplevel
        try:
            self.session = ort_session(path, threads)
        except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
            raise unreadable(path, self.FORMAT, _first_line(exc)) from None
        self.input_name = self.session.get_inputs()[0].name
        super().__init__(path, self.session.get_modelmeta().custom_metadata_map)

    def run(self, x):
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, np.float32)})[0]


class MindIRRunner(_Runner):
    """A MindIR file run by ``mindspore.load`` + ``nn.GraphCell``."""

    FORMAT = "MindIR"

    def __init__(self, path):
        from src.export.mindir import load_mindir  # pylint: disable=import-outside-toplevel
        proto = read_mindir_proto(path)  # refuses what is not a MindIR graph before MindSpore's loader
        user_info = dict(proto.user_info)
        del proto
        try:
            self.graph = load_mindir(path)
        except (RuntimeError, ValueError, TypeError) as exc:  # MindSpore: "Load MindIR failed."
            raise unreadable(path, self.FORMAT, _first_line(exc)) from None
        super().__init__(path, user_info)

    def run(self, x):
        return self.graph(Tensor(np.ascontiguousarray(x, np.float32))).asnumpy()


def open_exported(path, log=print):
    """A runner for a .onnx or .mindir file; ``log`` gets the notice of a file without metadata.

    Raises ExportedModelError (a ValueError) for an unreadable file or metadata
    that disagrees with the graph, ValueError for another extension.
    """
    lower = path.lower()
    if lower.endswith(".onnx"):
        runner = OnnxRunner(path)
    elif lower.endswith(".mindir"):
        runner = MindIRRunner(path)
    else:
        raise ValueError(f"{path}: expected a .ckpt, .mindir or .onnx file")
    if runner.notice:
        log(runner.notice)
    return runner
