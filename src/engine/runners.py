"""Exported files as predictors' networks: MindIR and ONNX files behave like a Cell for SRPredictor.

A runner takes and returns MindSpore Tensors (NCHW float in [0, 1]) and tells
``n_colors`` and ``scale`` (both found by a probe run on a small input), so
:class:`~src.engine.inference.SRPredictor` tiles, ensembles and handles Y-only
models for them as for a checkpoint.
"""
import numpy as np
from mindspore import Tensor

PROBE = 16


class _Runner:
    receptive_radius = 16

    def __init__(self, path):
        self.path = path
        self.n_colors, self.scale = self._probe()
        self.peak_channels = 64 * self.scale * self.scale  # conservative: for automatic tile sizes

    def _probe(self):
        errors = []
        for channels in (3, 1):
            try:
                out = self.run(np.zeros((1, channels, PROBE, PROBE), np.float32))
            except Exception as exc:  # runtimes raise their own types for a wrong channel count
                errors.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                continue
            return channels, out.shape[-1] // PROBE
        raise ValueError(f"{self.path} does not run on a 1x3 or 1x1 channel image: {errors[-1]}")

    def run(self, x):
        raise NotImplementedError

    def __call__(self, x):
        return Tensor(self.run(x.asnumpy() if isinstance(x, Tensor) else x))

    def set_train(self, mode=False):
        return self

    def set_inputs(self, *inputs):
        return self


class OnnxRunner(_Runner):
    def __init__(self, path, threads=0):
        from src.export.onnx_float import ort_session  # pylint: disable=import-outside-toplevel
        self.session = ort_session(path, threads)
        self.input_name = self.session.get_inputs()[0].name
        super().__init__(path)

    def run(self, x):
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, np.float32)})[0]


class MindIRRunner(_Runner):
    def __init__(self, path):
        from src.export.mindir import load_mindir  # pylint: disable=import-outside-toplevel
        self.graph = load_mindir(path)
        super().__init__(path)

    def run(self, x):
        return self.graph(Tensor(np.ascontiguousarray(x, np.float32))).asnumpy()


def open_exported(path):
    """A runner for a .onnx or .mindir file."""
    lower = path.lower()
    if lower.endswith(".onnx"):
        return OnnxRunner(path)
    if lower.endswith(".mindir"):
        return MindIRRunner(path)
    raise ValueError(f"{path}: expected a .ckpt, .mindir or .onnx file")
