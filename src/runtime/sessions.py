"""The runtimes' sessions of an exported file: onnxruntime for .onnx and .ort files, MindSpore's GraphCell for
.mindir files. The runners (:mod:`src.runtime.runners`) and the writers' checks (:mod:`src.export`) open files
through these, so a file is run the same way when it is checked and when it is used. onnxruntime is imported
when a session is made (an optional dependency of evaluation)."""
import numpy as np
import mindspore as ms
from mindspore import Tensor, nn


def ort_session(path_or_model, threads=0, optimized_path=None):
    """An onnxruntime ``InferenceSession`` on the CPU execution provider for a .onnx / .ort path or
    a ModelProto, warnings silenced; ``threads`` > 0 sets the intra-op thread count (0: onnxruntime's
    default), ``optimized_path`` makes onnxruntime write its optimised graph there. onnxruntime's
    own exceptions (e.g. an invalid graph) pass through."""
    import onnxruntime as ort  # pylint: disable=import-outside-toplevel
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    if optimized_path:
        options.optimized_model_filepath = optimized_path
    source = path_or_model if isinstance(path_or_model, str) else path_or_model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run_onnx(session, x):
    """The first output of ``session`` for the input ``x`` (NCHW, cast to contiguous float32), as a
    numpy array (NCHW, float32 for float and QDQ graphs)."""
    return session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(x, np.float32)})[0]


def load_mindir(path):
    """A callable ``nn.GraphCell`` running the MindIR graph at ``path`` (NCHW float32 in and out);
    MindSpore's own errors for an unreadable file pass through."""
    return nn.GraphCell(ms.load(path))


class SessionNet:
    """An onnxruntime session of ``model`` (a .onnx path or a ModelProto) as a predictor's network: Tensor in
    (NCHW float32 in [0, 1]), Tensor out, with the model interface :class:`~src.engine.inference.SRPredictor`
    reads (``n_colors``, ``scale``, ``receptive_radius``, ``peak_channels``) taken from the network ``like`` it
    was exported from. For comparing a graph in memory with its network; a file on disk is run by
    :func:`src.runtime.runners.open_exported`."""

    def __init__(self, model, like):
        for name in ("n_colors", "scale", "receptive_radius", "peak_channels"):
            setattr(self, name, getattr(like, name))
        self.session = ort_session(model)

    def __call__(self, x):
        return Tensor(run_onnx(self.session, x.asnumpy()))

    def set_train(self, mode=False):  # pylint: disable=unused-argument
        """A session has no training mode (the Cell interface SRPredictor calls)."""
        return self

    def set_inputs(self, *inputs):  # pylint: disable=unused-argument
        """A session takes any input shape its graph allows (the Cell interface SRPredictor calls)."""
        return self
