"""MindIR export with a dynamic height/width input (or a fixed one for MindSpore Lite), and its round-trip check."""
import os

import numpy as np
import mindspore as ms
from mindspore import Tensor

from src.runtime.metadata import mindir_user_info
from src.runtime.sessions import load_mindir
from src.errors import UserError


def export_mindir(net, n_colors, file_name, metadata=None, shape=None):
    """Write ``file_name``.mindir taking ``1 x n_colors x H x W`` for any H, W (``shape`` None) or a fixed
    ``shape`` (N, C, H, W: the mobile profile, for MindSpore Lite's converter); returns the path.

    ``metadata`` (``{key: str}``, see :mod:`src.runtime.metadata`) goes into the
    MindIR ``user_info``, where :class:`~src.runtime.runners.MindIRRunner` reads it. ``net`` is put in
    inference mode; MindSpore's own export errors pass through.
    """
    net.set_train(False)
    dynamic = Tensor(shape=list(shape) if shape is not None else [1, n_colors, None, None], dtype=ms.float32)
    path = file_name if file_name.endswith(".mindir") else file_name + ".mindir"
    extra = {"custom_func": mindir_user_info(metadata)} if metadata else {}
    ms.export(net, dynamic, file_name=os.path.splitext(path)[0], file_format="MINDIR", **extra)
    return path


def mindir_max_diff(path, net, inputs):
    """Max |MindIR(x) - net(x)| over ``inputs`` (float32 NCHW arrays in [0, 1], possibly of different
    sizes), in image units; ValueError when an output shape differs from ``net``'s."""
    graph = load_mindir(path)
    worst = 0.0
    for x in inputs:
        ref = net(Tensor(x)).asnumpy()
        out = graph(Tensor(x)).asnumpy()
        if out.shape != ref.shape:
            raise UserError(f"MindIR output shape {out.shape} differs from the model's {ref.shape}")
        worst = max(worst, float(np.abs(out - ref).max()))
    return worst
