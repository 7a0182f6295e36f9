"""Public entry point of the ONNX export profiles: :func:`build_onnx` and :data:`MOBILE_OPS`.

``desktop`` is the onnxruntime-on-x86 graph (dynamic H/W, strided sub-pixel convs, padded
int8 channels); ``mobile`` is a fixed-shape graph of the ops phone delegates (NNAPI, CoreML,
TFLite) run whole. The passes of each are listed in :data:`src.export.onnx.passes.PROFILES`.
"""
import numpy as np

from src.export.onnx.onnx_float import traced_onnx
from src.export.onnx.passes import MOBILE_OPS, ExportContext, PROFILES, run_passes  # noqa: F401  (MOBILE_OPS: public here)
from src.errors import UserError
from src.export.onnx.onnx_qdq import output_ranges_for

TARGETS = tuple(PROFILES)


def build_onnx(fp_net, q_net, example, target, quant, output_ranges=None):
    """The ONNX ModelProto (opset 13) of a network for ``target`` 'mobile' | 'desktop'.

    ``example``: float32 NCHW array in [0, 1], the traced shape; mobile graphs keep it fixed
    (input/output named as MindSpore names them: ``x`` or ``y`` in, ``N x C x sH x sW`` out),
    desktop graphs get dynamic H/W. ``quant`` 'none': float graph (desktop traces ``q_net``, the
    fake-quant graph, when given, as ``export.py`` always did; mobile always traces ``fp_net``,
    fake-quant ops not being delegate ops); 'int8': QuantizeLinear/DequantizeLinear at the
    calibrated grids of ``q_net`` (required) around the float graph of ``fp_net``;
    ``output_ranges``: {layer: (min, max)} from :func:`src.export.onnx.onnx_qdq.observe_output_ranges`
    (observed on ``example`` when None). Raises ValueError for an unknown target/quant, int8
    without ``q_net``, or a graph the profile cannot express.
    """
    if target not in PROFILES:
        raise UserError(f"target must be one of {', '.join(TARGETS)}, not '{target}'")
    if quant not in ("none", "int8"):
        raise UserError(f"quant must be 'none' or 'int8', not '{quant}'")
    example = np.ascontiguousarray(example, np.float32)
    if example.ndim != 4:
        raise ValueError(f"the example input must be N,C,H,W (4-D), not shape {example.shape}")
    if quant == "int8":
        if q_net is None:
            raise UserError("int8 export needs a calibrated or QAT network (q_net)")
        if output_ranges is None:  # observed on the example, unless the model carries its grids
            output_ranges = output_ranges_for(q_net, [example], target)
        net = fp_net
    else:
        net = q_net if (q_net is not None and target == "desktop") else fp_net
    ctx = ExportContext(quant=quant, qnet=q_net, output_ranges=output_ranges, example=example,
                        n_colors=fp_net.n_colors)
    return run_passes(traced_onnx(net, example), PROFILES[target], ctx)


__all__ = ["build_onnx", "MOBILE_OPS", "TARGETS"]
