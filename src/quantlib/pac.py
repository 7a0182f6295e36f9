"""Pixel-aware calibration (PaC, PTQ4SR): tune quantizer bounds to match the float model.

Only the bounds move, never the weights. Loss on a batch of unlabeled LR patches:
``L1(q(x), fp(x)) + feature_weight * mean_l L1(q_l(x), fp_l(x))`` (``loss="l2"``: squared
errors instead; measured on ABPN x3 W8A8 Set5 / Set14: L1 33.486 / 29.739, L2 33.480 / 29.750) where ``_l`` are the
intermediate block outputs: the inputs of every quantized layer but the first
(post-activation features, read before that layer quantizes them).
Unlike the published code, which detaches the quantized features so that this term
never reaches the bounds, the quantized features keep their gradient here.

With ``relative_features`` (default) each feature term is divided by that feature's mean
magnitude relative to the output's, so a layer with large activations does not outweigh
the rest (measured on ABPN x3 W4A4 Set5: feature weight 5 relative 29.67 dB, output only 29.91).

Two phases, each with Adam and a cosine decay: activation bounds
(``act_lr`` 5e-3 -> ``act_lr_min`` 2e-3, the paper's values), then weight bounds
(``weight_lr`` 1e-2 -> ``weight_lr_min`` 1e-3). The paper code's weight rates (5e-6 -> 2e-6)
move a bound by at most ~1e-3 in 250 Adam steps, nothing next to ABPN's per-channel weight
ranges (0.1 to 6): W4A4 Set5 stayed at the DBDC value (29.05 dB); 1e-2 -> 1e-3 gives +0.86 dB.
Each step runs as a compiled graph (:mod:`src.quantlib.pac_step`); ``graph=False`` keeps the
PyNative reference path (features read with forward hooks), for checks and benchmarks.
"""
import time
from dataclasses import dataclass

import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops

from src.quantlib.deploy import FixedStepQuant, site_quantizers
from src.quantlib.quant_layers import quant_layers
from src.utils.cosine import cosine_decay
from src.quantlib.pac_step import FeatureCache, PaCStep, tapped
from src.utils.hooks import forward_hooks, graph_mode, pynative_mode
from src.errors import SettingError


@dataclass
class PaCConfig:
    """PaC settings: iterations and Adam learning rates (start -> end of the cosine decay) of each
    phase, patches per step (``batch``), the feature term's weight and form, the loss (``"l1"`` or
    ``"l2"``; :class:`~src.errors.SettingError`, a ``ValueError``, otherwise), the seed of the patch
    draws and ``graph`` (compiled steps; False: the PyNative reference path)."""
    act_iters: int = 250
    weight_iters: int = 250
    act_lr: float = 5e-3
    act_lr_min: float = 2e-3
    weight_lr: float = 1e-2
    weight_lr_min: float = 1e-3
    batch: int = 2
    feature_weight: float = 5.0
    relative_features: bool = True
    loss: str = "l1"
    seed: int = 0
    graph: bool = True

    def __post_init__(self):
        if self.loss not in ("l1", "l2"):
            raise SettingError("PaCConfig", "loss", self.loss, "'l1' or 'l2'")


def cosine_rates(start, end, steps):
    """``steps`` learning rates (a list of floats) from ``start`` down to ``end`` on a cosine (both reached);
    one rate ``[start]`` when ``steps`` <= 1. PaC's and reconstruction's per-step Adam rates."""
    if steps <= 1:
        return [start] * max(steps, 1)
    return [cosine_decay(start, end, i / (steps - 1)) for i in range(steps)]


def layer_inputs(net, layers, x):
    """``(net(x), [input of each of layers])`` for a batch ``x`` (Tensor (N, C, h, w)): the inputs of the
    cells ``layers`` (Tensors, each layer's (N, C_l, h_l, w_l)) read with forward pre-hooks; PyNative
    mode only (graph mode compiles hooks away)."""
    feats = []
    with forward_hooks([(layer, lambda _c, inputs: feats.append(inputs[0])) for layer in layers], pre=True):
        out = net(x)
    return out, feats


def _feature_scales(features, fp_out, relative, power=1):
    """Divisors of the feature terms: 1, or each feature's mean magnitude relative to the output's
    (squared for the L2 loss), so that every layer weighs like the output term whatever the scale
    of its activations."""
    if not relative:
        return [1.0] * len(features)
    out_mag = max(float(ops.abs(fp_out).mean().asnumpy()), 1e-6)
    return [(max(float(ops.abs(f).mean().asnumpy()), 1e-6) / out_mag) ** power for f in features]


def _phases(layers, cfg, sites=()):
    """``[(phase, bounds, iterations, lr, lr_min)]``: activation bounds (with those of the deployment
    ``sites``, ``[(site, quantizer)]`` of :func:`~src.quantlib.deploy.site_quantizers`: the lower bound
    only of a fixed-step grid), then weight bounds (the upper bound only of a symmetric grid); phases
    without a bound or an iteration are left out."""
    act = [p for l in layers if l.act_quant.enabled for p in (l.act_quant.lower, l.act_quant.upper)]
    act += [p for _, q in sites for p in ((q.lower,) if isinstance(q, FixedStepQuant) else (q.lower, q.upper))]
    weight = [p for l in layers if l.weight_quant.enabled
              for p in ((l.weight_quant.upper,) if l.weight_quant.symmetric
                        else (l.weight_quant.lower, l.weight_quant.upper))]
    phases = (("activation", act, cfg.act_iters, cfg.act_lr, cfg.act_lr_min),
              ("weight", weight, cfg.weight_iters, cfg.weight_lr, cfg.weight_lr_min))
    return [p for p in phases if p[1] and p[2] > 0]


class BatchDraws:
    """Seeded batch draws from ``patches`` (float32 (N, C, h, w)): ``cfg.batch`` distinct patches per
    step, from ``numpy.random.default_rng(cfg.seed)`` (``cfg``: :class:`PaCConfig` or
    :class:`~src.quantlib.reconstruct.ReconConfig`); PaC's two paths and reconstruction share it."""

    def __init__(self, patches, cfg):
        self.patches, self.size = patches, cfg.batch
        self.rng = np.random.default_rng(cfg.seed)

    def indices(self):
        """The next batch's patch indices (int array of ``batch`` distinct values)."""
        return self.rng.choice(len(self.patches), self.size, replace=False)

    def next(self):
        """The next batch (float32 Tensor (batch, C, h, w))."""
        return Tensor(self.patches[self.indices()])


def _progress(log, phase, it, iters, losses, start):
    if log and (it + 1) % max(1, iters // 5) == 0:
        elapsed = time.monotonic() - start
        eta = f", ETA {elapsed / (it + 1) * (iters - it - 1):.0f} s" if it + 1 < iters else ""
        log(f"PaC {phase} bounds: iteration {it + 1}/{iters}, loss {np.mean(losses[-10:]):.5f}, "
            f"{elapsed:.0f} s{eta}")


def _pynative_phase(qnet, fp_net, taps, draws, phase, cfg, log):
    """The reference path: one phase in PyNative mode, the feature taps read with forward hooks."""
    name, params, iters, lr, lr_min = phase
    taps_q, taps_fp = taps
    opt = nn.Adam(params, learning_rate=cosine_rates(lr, lr_min, iters))
    distance, power = (ops.abs, 1) if cfg.loss == "l1" else (ops.square, 2)

    def loss_fn(x, fp_out, fp_feats, feat_scales):
        out, feats = layer_inputs(qnet, taps_q, x)
        loss = distance(out - fp_out).mean()
        if feats and cfg.feature_weight:
            feat = sum(distance(f - t).mean() / s for f, t, s in zip(feats, fp_feats, feat_scales))
            loss = loss + cfg.feature_weight * feat / len(feats)
        return loss

    grad_fn = ms.value_and_grad(loss_fn, grad_position=None, weights=params)
    losses, start = [], time.monotonic()
    for it in range(iters):
        x = draws.next()
        fp_out, fp_feats = layer_inputs(fp_net, taps_fp, x)
        scales = _feature_scales(fp_feats, fp_out, cfg.relative_features, power)
        loss, grads = grad_fn(x, ops.stop_gradient(fp_out), [ops.stop_gradient(f) for f in fp_feats], scales)
        # No projection of the bounds here: resetting parameter data between steps froze
        # the optimisation; FakeQuant's forward already keeps lower <= 0 <= upper.
        opt(grads)
        losses.append(float(loss.asnumpy()))
        _progress(log, name, it, iters, losses, start)
    return losses


def _graph_phases(qnet, fp_net, taps, draws, phases, cfg, log):
    """The compiled path (:mod:`src.quantlib.pac_step`): every phase's steps as graph-mode Cells, the
    float model's outputs and features computed once per patch when they fit in memory (else on
    each drawn batch). ``taps``: ``(names, float cells)`` of the tapped layers."""
    names, taps_fp = taps
    with pynative_mode():
        out, feats = layer_inputs(fp_net, taps_fp, Tensor(draws.patches[:draws.size]))
    shapes = [tuple(f.shape) for f in feats]
    term = (cfg.feature_weight, cfg.relative_features, 1 if cfg.loss == "l1" else 2)
    history = {}
    with tapped(qnet, fp_net, names, shapes, cfg.loss) as (match_taps, float_taps), graph_mode():
        cache = (FeatureCache(fp_net, float_taps, draws.patches, draws.size, *term)
                 if FeatureCache.fits(shapes, out.shape, len(draws.patches), draws.size) else None)
        for name, params, iters, lr, lr_min in phases:
            step = PaCStep(qnet, match_taps, params, nn.Adam(params, learning_rate=cosine_rates(lr, lr_min, iters)),
                           cfg.loss)
            losses, start = [], time.monotonic()
            for it in range(iters):
                idx = draws.indices()
                batch = cache or FeatureCache(fp_net, float_taps, draws.patches[idx], draws.size, *term)
                fp_out = batch.load(idx if cache else np.arange(draws.size), match_taps)
                losses.append(float(step(Tensor(draws.patches[idx]), fp_out).asnumpy()))
                _progress(log, name, it, iters, losses, start)
            history[name] = losses
    return history


def pixel_aware_calibration(qnet, fp_net, patches, cfg=PaCConfig(), log=None):
    """Optimise the bounds of ``qnet`` (calibrated, as :func:`~src.quantlib.calibrate.calibrate` leaves
    it) in place to match ``fp_net`` (the same float model) on ``patches`` (float32 array
    (N, C, h, w), LR images in [0, 1], N >= ``cfg.batch``); weights never change.
    Returns ``{"activation": [loss per step], "weight": [...]}`` (phases with no step left out);
    ``log(str)`` gets five progress lines per phase. ``ValueError`` when the two models' layers differ.
    PTQ4SR's pixel-aware calibration (Tu et al., CVPR 2023), with the changes the module notes.
    ``cfg.graph`` (default) runs each step as a compiled graph (:mod:`src.quantlib.pac_step`);
    False runs the PyNative reference with forward hooks (same draws, same results up to float
    rounding). A deployment model's site bounds (:mod:`src.quantlib.deploy`) are optimised with the
    activation bounds, so PaC sees and compensates the roundings of the integer file."""
    layers = [layer for _, layer in quant_layers(qnet)]
    names = [n for n, _ in quant_layers(qnet)]
    fp_cells = dict(fp_net.cells_and_names())
    if len(names) != len(layers) or any(n not in fp_cells for n in names):
        raise ValueError("the float model's layers do not match the quantized model's")
    qnet.set_train(False)
    fp_net.set_train(False)
    draws = BatchDraws(patches, cfg)
    phases = _phases(layers, cfg, site_quantizers(qnet))
    if cfg.graph:
        tap_names = names[1:] if cfg.feature_weight else []
        return _graph_phases(qnet, fp_net, (tap_names, [fp_cells[n] for n in tap_names]), draws, phases, cfg, log)
    taps = (layers[1:], [fp_cells[n] for n in names[1:]])
    with pynative_mode():
        return {phase[0]: _pynative_phase(qnet, fp_net, taps, draws, phase, cfg, log) for phase in phases}
