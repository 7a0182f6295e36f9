"""Export profiles as ordered lists of passes over one ONNX ModelProto.

A profile (``--target``) is a tuple of :class:`Pass`; :func:`run_passes` runs them in order
on the traced float graph (MindSpore's ``mindspore.export(..., 'ONNX')`` at the example
shape). A pass marked ``quant="int8"`` runs only for ``--quant int8``, ``"none"`` only for a
float graph; every pass changes the model in place.

- ``desktop`` (onnxruntime on x86, dynamic H/W): opset 13, dynamic H/W; int8: plan the
  grids (:func:`src.export.onnx.qdq_plan.plan_desktop`), write the Q/DQ nodes, drop
  re-quantizations; the strided sub-pixel rewrite (float and int8); int8: channel padding,
  late dequantization, the 8-bit image grid on RGB outputs.
- ``mobile`` (phone delegates: NNAPI, CoreML, TFLite; fixed shape): opset 13, constants as
  initializers, the anchor's Tile as a Concat, SESR's ``x - 0.5`` as an Add, ETDS's channel
  Slice folded into its conv, fixed shape; int8: observe every tensor's range on the example,
  plan a grid for every tensor between two ops (:func:`src.export.onnx.qdq_plan.plan_mobile`),
  write, put each PReLU in its integer split form (:mod:`src.export.onnx.prelu_split`), drop the clips that
  the grids saturate and the re-quantizations; finally only
  :data:`src.export.onnx.profiles.MOBILE_OPS` may remain.
"""
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import version_converter

from src.export.onnx import mobile_rewrites
from src.export.onnx import qdq_rewrites
from src.export.deploy_sites import site_grids
from src.export.onnx.onnx_subpixel import strided_subpixel_convs
from src.export.onnx.prelu_split import split_prelu
from src.export.onnx.qdq_plan import plan_desktop, plan_mobile
from src.export.onnx.qdq_writer import write_qdq
from src.quantlib.deploy import is_deployment
from src.export.onnx.onnx_float import mark_dynamic_hw
from src.runtime.sessions import ort_session

# The op types a mobile graph may contain (float and int8 QDQ); public as src.export.onnx.profiles.MOBILE_OPS.
MOBILE_OPS = frozenset({"Conv", "Relu", "PRelu", "Add", "Concat", "DepthToSpace", "Clip", "Min", "Max",
                        "QuantizeLinear", "DequantizeLinear"})

OPSET = 13  # per-channel QuantizeLinear/DequantizeLinear


@dataclass
class ExportContext:
    """What passes read besides the model: ``quant`` ('none' | 'int8'), the calibrated ``qnet``,
    ``output_ranges`` ({layer: (min, max)} of quantized layer outputs), ``example`` (float32 NCHW
    array, for observing ranges), ``n_colors``; passes store ``plan`` and ``tensor_ranges`` here
    and each pass's return value in ``results``."""
    quant: str = "none"
    qnet: object = None
    output_ranges: dict = None
    example: np.ndarray = None
    n_colors: int = 3
    quantize_last: bool = True
    plan: object = None
    tensor_ranges: dict = None
    results: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Pass:
    """``run(model, ctx)`` changes ``model`` in place; ``quant``: None (always), 'int8' or 'none'."""
    name: str
    run: object
    quant: str = None

    def applies(self, ctx):
        """True if this pass runs for ``ctx.quant``."""
        return self.quant is None or self.quant == ctx.quant


def run_passes(model, passes, ctx):
    """Run ``passes`` in order on ``model`` (in place), storing each return value in
    ``ctx.results[name]``, and return ``model``. Errors of a pass pass through."""
    for step in passes:
        if step.applies(ctx):
            ctx.results[step.name] = step.run(model, ctx)
    return model


def passes_from(profile, name):
    """The passes of ``PROFILES[profile]`` from the one called ``name`` on (KeyError for an unknown
    profile, ValueError for an unknown pass name)."""
    steps = PROFILES[profile]
    return steps[[s.name for s in steps].index(name):]


# ---- the passes ----
def to_opset(model, _ctx):
    """Convert ``model`` to :data:`OPSET` (13: per-axis QuantizeLinear / DequantizeLinear) when older."""
    if model.opset_import[0].version < OPSET:
        model.CopyFrom(version_converter.convert_version(model, OPSET))


def dynamic_hw(model, _ctx):
    """Symbolic H and W on the graph input and output (:func:`src.export.onnx.onnx_float.mark_dynamic_hw`)."""
    mark_dynamic_hw(model)


def check(model, _ctx):
    """``onnx.checker.check_model`` (ValidationError on a malformed graph)."""
    onnx.checker.check_model(model)


def desktop_plan(model, ctx):
    """``ctx.plan``: the desktop :class:`~src.export.onnx.qdq_plan.QDQPlan` of ``ctx.qnet``'s grids."""
    ctx.plan = plan_desktop(model, ctx.qnet, ctx.output_ranges, ctx.quantize_last)


def write(model, ctx):
    """Write ``ctx.plan``'s Q/DQ nodes (:func:`src.export.onnx.qdq_writer.write_qdq`); returns the mark count."""
    return write_qdq(model, ctx.plan)


def image_grid(model, ctx):
    """RGB models: the residual sum on the 8-bit image grid and its DequantizeLinear moved past the
    pixel shuffle (:func:`~src.export.onnx.qdq_rewrites.image_grid_output`); returns True if applied."""
    # RGB models take and give 8-bit images. A Y-channel model (SESR) takes a float Y computed from
    # RGB and its Y output is turned back into RGB, so rounding both to 1/255 costs Set5 0.06-0.08 dB
    # (measured on both SESR x2 checkpoints): its desktop output stays float.
    if ctx.n_colors == 3 and qdq_rewrites.image_grid_output(model):
        qdq_rewrites.dequantize_late(model)  # the new DQ of the sum moves past the pixel shuffle
        return True
    return False


def observe_tensor_ranges(model, ctx):
    """``ctx.tensor_ranges``: {tensor: (min, max)} of every node output of the float graph on
    ``ctx.example`` (NCHW float32, onnxruntime CPU), plus the graph input's own range."""
    if is_deployment(ctx.qnet):  # a deployment model: every grid is in the checkpoint
        ctx.tensor_ranges = {}
        return
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    names = [o for n in probe.graph.node for o in n.output if o not in known]
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names)
    session = ort_session(probe)
    feed = {session.get_inputs()[0].name: np.ascontiguousarray(ctx.example, np.float32)}
    outputs = [o.name for o in session.get_outputs()]
    ctx.tensor_ranges = {name: (float(v.min()), float(v.max())) for name, v in zip(outputs, session.run(None, feed))}
    ctx.tensor_ranges[session.get_inputs()[0].name] = (float(ctx.example.min()), float(ctx.example.max()))


def mobile_plan(model, ctx):
    """``ctx.plan``: the mobile :class:`~src.export.onnx.qdq_plan.QDQPlan` (every tensor on a grid; RGB
    models with the image grid on input and output sum)."""
    grids = site_grids(model, ctx.qnet) if is_deployment(ctx.qnet) else None
    ctx.plan = plan_mobile(model, ctx.qnet, ctx.output_ranges, ctx.tensor_ranges, rgb=ctx.n_colors == 3,
                           site_grids=grids)


def mobile_ops(model, _ctx):
    """ValueError if an op outside :data:`src.export.onnx.profiles.MOBILE_OPS` remains; ``onnx.checker``."""
    mobile_rewrites.check_mobile_ops(model, MOBILE_OPS)


def _in_place(function):
    return lambda model, _ctx: function(model)


PROFILES = {
    "desktop": (
        Pass("opset13", to_opset),
        Pass("dynamic_hw", dynamic_hw),
        Pass("check_float", check),
        Pass("plan_qdq", desktop_plan, "int8"),
        Pass("write_qdq", write, "int8"),
        Pass("drop_requantization", _in_place(qdq_rewrites.drop_requantization), "int8"),
        Pass("strided_subpixel", _in_place(strided_subpixel_convs)),
        Pass("pad_conv_channels", _in_place(qdq_rewrites.pad_conv_channels), "int8"),
        # first, so that a conv output's DQ (past a padding Slice) feeds the final Add
        Pass("dequantize_late", _in_place(qdq_rewrites.dequantize_late), "int8"),
        Pass("image_grid_output", image_grid, "int8"),
        Pass("check", check, "int8"),
    ),
    "mobile": (
        Pass("opset13", to_opset),
        Pass("constants_to_initializers", _in_place(mobile_rewrites.constants_to_initializers)),
        Pass("fold_constant_unsqueeze", _in_place(mobile_rewrites.fold_constant_unsqueeze)),
        Pass("tile_to_concat", _in_place(mobile_rewrites.tile_to_concat)),
        Pass("sub_constant_to_add", _in_place(mobile_rewrites.sub_constant_to_add)),
        Pass("slice_to_conv_channels", _in_place(mobile_rewrites.slice_to_conv_channels)),
        Pass("fixed_shape", _in_place(mobile_rewrites.fixed_shape)),
        Pass("observe_tensor_ranges", observe_tensor_ranges, "int8"),
        Pass("plan_qdq", mobile_plan, "int8"),
        Pass("write_qdq", write, "int8"),
        Pass("split_prelu", _in_place(split_prelu), "int8"),
        Pass("drop_saturated_clips", _in_place(qdq_rewrites.drop_saturated_clips), "int8"),
        Pass("drop_requantization", _in_place(qdq_rewrites.drop_requantization), "int8"),
        Pass("mobile_ops", mobile_ops),
    ),
}

__all__ = ["ExportContext", "Pass", "PROFILES", "run_passes", "passes_from", "OPSET"]
