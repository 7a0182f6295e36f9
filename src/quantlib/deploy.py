"""The deployment simulation: the quantized model computes what the full-integer phone file computes.

PTQ4SR's placement (:mod:`src.quantlib.quant_layers`) rounds conv inputs and weights only. A
full-integer file (int8 TFLite, int8 mobile ONNX / ``.ort``) has no float tensor between two
ops, so it also rounds, on 8-bit grids:

- a conv output that is not read by a ReLU fused into it (before a PReLU, before an Add, the
  residual added to the anchor), and the int32 bias (step = input step x weight step);
- PReLU, written as ``relu(y)`` and ``relu(-k y)`` on ``[0, high]`` of ``y``'s grid ``[low, high]`` (per
  channel ``k = |a|``, :func:`split_factors`) mixed by a 1x1 conv whose per-channel weights
  ``(1, -a/k)`` are int8 at step ``max(1, |a/k|) / 127`` (see :mod:`src.export.onnx.prelu_split`);
- an activation output read by an Add (SESR's last PReLU or ReLU output);
- the image input (a Y channel computed from RGB is not on the 1/255 grid of an 8-bit file).

Each such place is a *site*. :class:`Site` lists are found on the exported graph by
:func:`src.export.deploy_calibration.deploy_sites` (the exporter's own planning rules, so one plan
serves both), stored in the checkpoint's ``quant_config`` and installed here by
:func:`install_sites` as quantizers whose bounds are Parameters (``<cell>.out_quant.lower`` ...):
calibrated on the calibration patches by the chosen observer (:func:`calibrate_sites`), learned
by PaC and QAT like any activation bound, and read by the exporters as the grids they write.

Site kinds (``cell``: the dotted path of the cell that holds the quantizer):

| kind          | cell           | what is rounded                                                        |
|---------------|----------------|------------------------------------------------------------------------|
| ``conv_out``  | quantized conv | its output, 8-bit min/max grid                                         |
| ``relu_out``  | quantized conv | its output before the ReLU that follows (the same as after it: the grid holds 0) |
| ``residual``  | quantized conv | its output on a 1/255-step grid (the residual added to the image-grid anchor) |
| ``tied``      | quantized conv | its output on the input grid of the quantized conv ``peer`` (also for other readers) |
| ``prelu``     | PReLU cell     | the split PReLU above; ``in_quant`` is the grid of its input ``y``    |
| ``act_out``   | PReLU cell     | its output, 8-bit min/max grid (``out_quant``)                         |
| ``input``     | the model      | its input on the 8-bit image grid (no parameters; ``input_quant``)     |
| ``tied_input``| a block with ``input_quant`` | its input (a residual sum read by the next block's conv ``peer`` and its skip) on ``peer``'s input grid, as the file's ADD output |

Every quantized conv of a deployment model also rounds its bias as the int32 bias of the file.
"""
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from mindspore import Tensor, nn, ops

from src.quantlib.fake_quant import FakeQuant, scale_grad
from src.quantlib.grid import asymmetric_grid_ms, round_ste
from src.quantlib.quant_layers import PLACEMENTS, QuantConv2d, cell_at, replace_cell, quantize_model
from src.utils.hooks import forward_hooks
from src.errors import UserError

IMAGE_STEP = np.float32(1.0 / 255.0)
SITE_KINDS = ("conv_out", "relu_out", "residual", "tied", "prelu", "act_out", "input", "tied_input")
_CONV_KINDS = ("conv_out", "relu_out", "residual", "tied")


@dataclass(frozen=True)
class Site:
    """One tensor the integer file rounds that PTQ4SR's placement keeps in float: ``kind`` (one of
    :data:`SITE_KINDS`), ``cell`` (dotted path of the cell holding the quantizer, "" for ``input``)
    and ``peer``: for ``tied`` the quantized conv whose input grid is used, for ``prelu`` the quantized
    conv whose output the PReLU reads (the exporter puts the PReLU input grid on that output)."""
    kind: str
    cell: str
    peer: str = ""

    def as_list(self):
        """``[kind, cell, peer]`` (the JSON form kept in ``quant_config``)."""
        return [self.kind, self.cell, self.peer]

    @classmethod
    def of(cls, value):
        """A Site from a Site or ``[kind, cell, peer]``; ``ValueError`` for anything else."""
        if isinstance(value, Site):
            return value
        if not isinstance(value, (list, tuple)) or len(value) != 3 or not all(isinstance(v, str) for v in value):
            raise UserError(f"a deployment site is [kind, cell, peer] (three strings), not {value!r}")
        if value[0] not in SITE_KINDS:
            raise UserError(f"deployment site kind '{value[0]}' is not one of {', '.join(SITE_KINDS)}")
        return cls(*value)


class FixedStepQuant(FakeQuant):
    """8-bit asymmetric fake quantizer with a fixed ``step`` (the 1/255 image step): only the zero
    point ``clamp(round(-min(lower, 0) / step), 0, 255)`` is calibrated (``lower`` learns; ``upper`` is
    kept at ``lower + 255 step`` for readers of :meth:`bounds`)."""

    def __init__(self, step=IMAGE_STEP):
        super().__init__(8, symmetric=False)
        self.step = float(step)
        self.step_t = Tensor(np.array([step], np.float32))

    def set_bounds(self, lower, upper=None):
        lower = float(min(np.asarray(lower, np.float32).reshape(-1)[0], 0.0))
        super().set_bounds(lower, lower + 255.0 * self.step)

    def grid(self):
        lower = np.minimum(self.lower.asnumpy().astype(np.float32), np.float32(0))
        step = np.asarray(self.step_t.asnumpy(), np.float32)
        zero = np.clip(np.floor(-lower / step + np.float32(0.5)), 0, 255).astype(np.float32)
        return step, zero

    def step_ms(self):
        return self.step_t

    def construct(self, x):
        if not self.enabled:
            return x
        lower = ops.minimum(scale_grad(self.lower, self.grad_factor), 0.0)
        zero = ops.clamp(round_ste(-lower / self.step_t), 0.0, 255.0)
        return self.quantize_asymmetric(x, self.step_t, zero)[0]


class ImageGridQuant(nn.Cell):
    """The 8-bit image grid (step 1/255, zero point 0, saturating to [0, 1]), no parameters: what
    the file's input quantization does to a float image (e.g. a Y channel computed from RGB)."""

    def __init__(self):
        super().__init__()
        self.step = Tensor(np.array([IMAGE_STEP], np.float32))

    def construct(self, x):
        return ops.clamp(ops.floor(x / self.step + 0.5), 0.0, 255.0) * self.step


class QuantPReLU(nn.Cell):
    """A PReLU as the integer file computes it (see the module notes): ``y`` (N, C, H, W), the float
    output of the conv before it, is split into ``relu(y)`` and ``relu(-k y)`` on the grid
    ``[0, high]`` of ``in_quant``'s grid ``[low, high]`` (per channel ``k = |a|``,
    :func:`split_factors`; a grid without a
    negative or positive side: ``relu(y_q)``, ``relu(-y_q)`` with ``k = 1``), mixed with int8
    weights ``(1, -a/k)`` at per-channel step ``max(1, |a/k|) / 127``; ``out_quant`` (``act_out``
    site) rounds the result. Parameter names: the PReLU's ``w`` and ``in_quant.*``/``out_quant.*``."""

    def __init__(self, prelu):
        super().__init__()
        self.w = prelu.w
        self.in_quant = FakeQuant(8, symmetric=False)
        self.out_quant = None
        self.has_out = False

    def add_output_quant(self):
        """Round the output on its own 8-bit grid (the ``act_out`` site)."""
        self.out_quant = FakeQuant(8, symmetric=False)
        self.has_out = True

    def construct(self, y):
        fq = self.in_quant
        if not fq.enabled:  # calibration of the sites: the float PReLU
            out = ops.relu(y) - self.w.reshape(1, -1, 1, 1) * ops.relu(-y)
            return self.out_quant(out) if self.has_out else out
        step, zero = asymmetric_grid_ms(scale_grad(fq.lower, fq.grad_factor), scale_grad(fq.upper, fq.grad_factor),
                                        255.0)
        low, high = -zero * step, (255.0 - zero) * step
        split = ops.logical_and(zero > 0.5, zero < 254.5)
        k = ops.select(split, high / ops.maximum(-low, 1e-12), ops.ones_like(high))
        k = split_factors(self.w.reshape(1, -1, 1, 1), k)
        half = ops.maximum(high, 1e-12) / 255.0
        pos_split = ops.clamp(round_ste(ops.relu(y) / half), 0.0, 255.0) * half
        neg_split = ops.clamp(round_ste(ops.relu(-k * y) / half), 0.0, 255.0) * half
        y_q = fq.quantize_asymmetric(y, step, zero)[0]
        pos = ops.select(ops.broadcast_to(split, y.shape), pos_split, ops.relu(y_q))
        neg = ops.select(ops.broadcast_to(split, y.shape), neg_split, ops.relu(-y_q))
        slope = self.w.reshape(1, -1, 1, 1) / k
        w_step = ops.maximum(ops.abs(slope), 1.0) / 127.0
        w_pos = round_ste(1.0 / w_step) * w_step
        w_neg = ops.clamp(round_ste(-slope / w_step), -127.0, 127.0) * w_step
        out = w_pos * pos + w_neg * neg
        if self.has_out:
            out = self.out_quant(out)
        return out


def split_factors(slope, k_max):
    """Per-channel ``k`` of the split PReLU (Tensors): ``|a|``, or ``k_max = high / -low`` where ``a`` is 0.
    ``relu(-k y)`` on the grid ``[0, high]`` is then the PReLU's negative output in output units: the
    mix weights are ``(1, -sign(a))``, exact in int8, both halves have the step ``high / 255`` and
    saturate at ``-high`` and ``high`` (y's own lower bound only decides whether to split). With
    ``k = k_max`` for every channel (the earlier form) the negative side was on y's grid, as coarse as
    DBDC's long negative tails make it (equalised ECBSR x3: y in [-41, 3.3], so a slope of 0.25 gave
    output steps of 0.04), and a slope above ``k_max`` made the weight of ``relu(y)`` ``round(127 / |a/k|)``,
    up to 1.2 % off 1: ECBSR x3 W8A8 equalised, Set5 / Set14 -0.32 / -0.19 dB, now -0.04 / -0.05.
    The numpy twin is :func:`split_factors_np` (the exporter's)."""
    magnitude = ops.abs(slope)
    return ops.select(magnitude > 0, magnitude, ops.broadcast_to(k_max, magnitude.shape))


def split_factors_np(slope, k_max):
    """:func:`split_factors` in numpy float32 (``slope`` (C,), ``k_max`` a float32 scalar)."""
    magnitude = np.abs(np.asarray(slope, np.float32))
    return np.where(magnitude > 0, magnitude, np.float32(k_max)).astype(np.float32)


def install_sites(net, sites):
    """Install the quantizers of ``sites`` (:class:`Site` or ``[kind, cell, peer]``) into the quantized
    ``net`` (after :func:`~src.quantlib.quant_layers.quantize_model`), bounds at -1 / 1 until calibrated
    or loaded; every quantized conv then also rounds its bias as the file's int32 bias. Returns the
    list of Sites. ``ValueError`` for a site whose cell is missing or of the wrong type."""
    sites = [Site.of(s) for s in sites or []]
    for _, cell in net.cells_and_names():
        if isinstance(cell, QuantConv2d):
            cell.round_bias = bool(cell.has_bias and cell.act_quant.enabled and cell.weight_quant.enabled
                                   and cell.weight_quant.symmetric)
    for site in sites:
        if site.kind == "input":
            if not hasattr(net, "input_quant"):
                raise UserError(f"{type(net).__name__} has no input_quant: its input cannot be put on the image grid")
            net.input_quant = ImageGridQuant()
            continue
        cell = cell_at(net, site.cell)
        if site.kind == "tied_input":
            _install_tied_input(cell, cell_at(net, site.peer), site)
            continue
        if site.kind in _CONV_KINDS:
            if not isinstance(cell, QuantConv2d):
                raise UserError(f"deployment site {site.kind} needs a quantized conv at '{site.cell}', "
                                 f"found {type(cell).__name__}")
            _install_conv_site(net, cell, site)
        elif site.kind == "prelu":
            if not isinstance(cell, nn.PReLU):
                raise UserError(f"deployment site prelu needs a PReLU at '{site.cell}', found {type(cell).__name__}")
            replace_cell(net, site.cell, QuantPReLU(cell), prefix=site.cell)
        else:  # act_out
            if not isinstance(cell, QuantPReLU):
                raise UserError(f"deployment site act_out needs a prelu site at '{site.cell}' first")
            cell.add_output_quant()
            for local, param in cell.out_quant.parameters_and_names():
                param.name = f"{site.cell}.out_quant.{local}"
    net.deploy_sites = sites
    return sites


def _install_tied_input(block, reader, site):
    """``block.input_quant`` := the input quantizer of the quantized conv ``reader`` (shared: one grid)."""
    if not hasattr(block, "input_quant"):
        raise UserError(f"deployment site tied_input needs a block with input_quant at '{site.cell}', "
                         f"found {type(block).__name__}")
    if not isinstance(reader, QuantConv2d):
        raise UserError(f"tied_input site reader '{site.peer}' is not a quantized conv")
    block.input_quant = reader.act_quant
    for local, param in reader.act_quant.parameters_and_names():  # MindSpore renamed them on assignment
        param.name = f"{site.peer}.act_quant.{local}"


def _install_conv_site(net, conv, site):
    if site.kind == "tied":
        reader = cell_at(net, site.peer)
        if not isinstance(reader, QuantConv2d):
            raise UserError(f"tied site reader '{site.peer}' is not a quantized conv")
        conv.out_quant = reader.act_quant  # the same cell and Parameters: one grid for every reader
        conv.out_mode = 2
        for local, param in reader.act_quant.parameters_and_names():  # MindSpore renamed them on assignment
            param.name = f"{site.peer}.act_quant.{local}"
        return
    conv.out_quant = FixedStepQuant() if site.kind == "residual" else FakeQuant(8, symmetric=False)
    conv.out_mode = 1
    for local, param in conv.out_quant.parameters_and_names():
        param.name = f"{site.cell}.out_quant.{local}"


def quantize_deploy(net, qcfg):
    """:func:`~src.quantlib.quant_layers.quantize_model` then :func:`install_sites` of ``qcfg.sites``
    (none for PTQ4SR's placement): the quantized model a ``qcfg`` describes, bounds uncalibrated.
    Returns the per-layer plan."""
    plan = quantize_model(net, qcfg)
    if qcfg.placement == "deploy":
        install_sites(net, qcfg.sites)
    return plan


def sites_of(net):
    """The Sites installed in ``net`` ([] for PTQ4SR's placement or a float model, and for a deployment
    model whose file rounds nothing beyond conv inputs and weights, e.g. ETDS)."""
    return list(getattr(net, "deploy_sites", None) or [])


def is_deployment(net):
    """True if ``net`` is a deployment model (:func:`install_sites` ran on it, even with no site):
    the exporters then read every grid from it and observe nothing."""
    return net is not None and getattr(net, "deploy_sites", None) is not None


def site_quantizers(net):
    """``[(site, quantizer)]`` of the sites of ``net`` with learnable bounds (``tied`` and ``input``
    sites have none): what calibration and PaC set."""
    found = []
    for site in sites_of(net):
        if site.kind in ("conv_out", "relu_out", "residual"):
            found.append((site, cell_at(net, site.cell).out_quant))
        elif site.kind == "prelu":
            found.append((site, cell_at(net, site.cell).in_quant))
        elif site.kind == "act_out":
            found.append((site, cell_at(net, site.cell).out_quant))
    return found


_OBSERVED = ("conv_out", "relu_out", "residual", "prelu", "act_out")


class SiteStatistics:
    """Observers of the deployment sites' tensors on ``stats_net`` (the float model, or a model with
    the same cell names), fed by forward hooks while it runs; :meth:`apply` sets the bounds of the
    deployment model's site quantizers. Statistics come from the float model, as the conv inputs'
    do (:func:`~src.quantlib.calibrate.collect_activation_bounds`), so they cost no pass of their
    own: the hooks ride on the statistics pass. ``observer_for(site)`` gives an observer
    (``collect``/``bounds``, e.g. the calibration method's); a ``residual`` site keeps only the
    minimum (its step is fixed), a ``relu_out`` site observes the conv output after the ReLU."""

    def __init__(self, stats_net, sites, observer_for):
        self.net = stats_net
        self.found = [(site, observer_for(site)) for site in (Site.of(s) for s in sites) if site.kind in _OBSERVED]

    @contextmanager
    def hooks(self):
        """Forward hooks on ``stats_net`` collecting every site's tensor while the block runs (PyNative)."""
        pre, post = [], []
        for site, observer in self.found:
            cell = cell_at(self.net, site.cell)
            if site.kind == "prelu":  # the PReLU's input: the conv output y
                pre.append((cell, lambda _c, inputs, o=observer: o.collect(inputs[0].asnumpy())))
            elif site.kind == "relu_out":
                post.append((cell, lambda _c, _i, out, o=observer: o.collect(np.maximum(out.asnumpy(), 0.0))))
            else:
                post.append((cell, lambda _c, _i, out, o=observer: o.collect(out.asnumpy())))
        with forward_hooks(pre, pre=True), forward_hooks(post):
            yield

    def apply(self, net):
        """Set the site quantizers of the deployment model ``net`` from the collected statistics;
        returns ``{cell: (lower, upper)}``."""
        quantizers = {(site.kind, site.cell): q for site, q in site_quantizers(net)}
        bounds = {}
        for site, observer in self.found:
            quantizer = quantizers[(site.kind, site.cell)]
            lower, upper = observer.bounds()
            if site.kind == "residual":
                quantizer.set_bounds(lower)
            else:
                quantizer.set_bounds(lower, upper)
            bounds[site.cell] = tuple(float(np.asarray(v).reshape(-1)[0]) for v in quantizer.bounds())
        return bounds


def calibrate_sites(net, batches, observer_for, stats_net):
    """Set the bounds of every site quantizer of the deployment model ``net`` from ``batches`` (float32
    NCHW model inputs) run through ``stats_net`` (the float model it was made from) with
    :class:`SiteStatistics`. Returns ``{cell: (lower, upper)}``."""
    stats = SiteStatistics(stats_net, sites_of(net), observer_for)
    if not stats.found:
        return {}
    stats_net.set_train(False)
    with stats.hooks():
        for batch in batches:
            stats_net(Tensor(batch))
    return stats.apply(net)


__all__ = ["Site", "SITE_KINDS", "PLACEMENTS", "FixedStepQuant", "ImageGridQuant", "QuantPReLU", "install_sites",
           "sites_of", "is_deployment", "site_quantizers", "split_factors", "split_factors_np", "calibrate_sites", "SiteStatistics", "quantize_deploy", "IMAGE_STEP"]
