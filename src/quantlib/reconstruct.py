"""Learned rounding with block reconstruction: low-bit PTQ past clipping (AdaRound, BRECQ, QDrop).

After the bounds are calibrated (DBDC, optionally PaC), the quantized model is fitted to the float
model block by block on the unlabeled calibration patches:

- **Blocks.** The quantized layers in registration order, ``block`` at a time (2, default: two
  convs with their activations; 1: one; 0: the whole network in one block). The zoo's deploy forms
  are chains, where that is the order data flows in; the blocks are consecutive layers, not a
  family's own modules (an EDSR residual block is not one block). A block's output is the input
  of the next block's first layer (read before that layer quantizes it: the post-activation
  feature, residual sums included) when that input depends on the block (checked), else the
  network output, as for the last block.
  Each block is fitted with the quantized inputs the earlier, already fitted blocks give (BRECQ,
  Li et al., ICLR 2021, Sec. 4).
- **Learned rounding** (AdaRound, Nagel et al., ICML 2020): each weight ``w`` on its channel's grid
  step ``s`` (zero point ``z``) becomes ``s * (clamp(floor(w / s) + h(V) + z, q_lo, q_hi) - z)`` with
  ``h(V) = clamp(sigmoid(V) * (zeta - gamma) + gamma, 0, 1)``, ``zeta = 1.1``, ``gamma = -0.1``, ``V``
  initialised so that ``h`` equals the fractional part of ``w / s`` clipped to [1e-4, 1 - 1e-4]
  (the float weight, to 1e-4 of a step). The
  regulariser ``sum(1 - |2 h - 1|^beta)`` (weight ``round_weight``) pushes each ``h`` to 0 or 1;
  ``beta`` decays linearly from ``beta_start`` towards ``beta_end`` (reached one step after the last)
  after a ``warmup`` fraction of the iterations without it. The regulariser is a sum over the
  block's weights while the reconstruction loss is relative, so its balance shifts with the
  block's size: ``round_weight`` 1e-3 was chosen at ``block`` 1 on ABPN's 3x3 convs (~7k
  weights each). After the block's iterations the rounding is hardened (``h = 1`` where
  ``V >= 0``) and the quantized weight itself is stored as the layer's weight: it sits on the grid,
  so the model's round-to-nearest, the checkpoint and the int8 exporters all carry the learned
  integers unchanged. Every learned integer is ``floor(w / s)`` or ``floor(w / s) + 1``: within one
  grid step of round-to-nearest.
- **Activation bounds** of the block's quantizers learn at the same time (LSQ gradients,
  Adam, cosine from ``act_lr`` to 0; BRECQ/QDrop learn the activation step the same way).
- **QDrop** (Wei et al., ICLR 2022), activation dropping only: during a block's iterations each
  activation quantizer in the block passes the unquantized value instead of the quantized one for
  a random ``drop`` fraction of the elements (0 = off; the official code's ``drop_prob`` is the
  opposite, the fraction kept quantized). The official code also mixes the block input element by
  element with the float model's; here the block input is always the quantized model's.

The reconstruction loss is the mean squared error of the block output divided by the mean square
of the float block output (scale-free, so one ``round_weight`` fits feature maps and images
alike). The loss reaches a block's parameters only: the block end's tap
(:class:`~src.quantlib.pac_step.MatchTap` with ``through=False``) drops the gradient of the layers
after it. Each iteration is one compiled graph (forward, gradients, one Adam step over a parameter
group each for the rounding variables and the bounds).
The published code followed for the exact algorithms: github.com/yhhhli/BRECQ and
github.com/wimh966/QDrop (read, not copied).
"""
from dataclasses import dataclass

import numpy as np
import mindspore as ms
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops

from src.utils.progress import ProgressLog
from src.quantlib.grid import sum_all_ms
from src.quantlib.pac import BatchDraws, cosine_rates, layer_inputs
from src.quantlib.pac_step import FeatureCache, distance, tapped
from src.quantlib.quant_layers import quant_layers, replace_cell
from src.utils.hooks import graph_mode, pynative_mode
from src.errors import SettingError

ZETA, GAMMA = 1.1, -0.1


@dataclass
class ReconConfig:
    """Settings of :func:`reconstruct` (see the module notes): ``iters`` per block, ``block``
    quantized layers per block (0 = one block), patches per step ``batch``, Adam rates of the
    rounding variables (``round_lr``, constant) and of the activation bounds (``act_lr``, cosine to
    0), the rounding regulariser's weight and ``beta`` schedule, QDrop's ``drop`` probability, which
    parts learn (``rounding``, ``act``: the ablations), and the seed of the batch draws.
    :class:`~src.errors.SettingError` (a ``ValueError``) for a value out of range."""
    iters: int = 500
    block: int = 2
    batch: int = 2
    round_lr: float = 0.1
    act_lr: float = 1e-3
    round_weight: float = 1e-3
    beta_start: float = 20.0
    beta_end: float = 2.0
    warmup: float = 0.2
    drop: float = 0.5
    rounding: bool = True
    act: bool = True
    seed: int = 0

    def __post_init__(self):
        checks = (("iters", self.iters >= 1, ">= 1"), ("block", self.block >= 0, ">= 0"),
                  ("batch", self.batch >= 1, ">= 1"), ("drop", 0.0 <= self.drop < 1.0, "in [0, 1)"),
                  ("warmup", 0.0 <= self.warmup < 1.0, "in [0, 1)"), ("round_weight", self.round_weight >= 0, ">= 0"),
                  ("round_lr", self.round_lr > 0, "> 0"), ("act_lr", self.act_lr >= 0, ">= 0"),
                  ("beta_end", self.beta_start >= self.beta_end > 0, f"in (0, beta_start {self.beta_start}]"))
        for name, ok, requirement in checks:
            if not ok:
                raise SettingError("ReconConfig", name, getattr(self, name), requirement)

    def schedule(self, it):
        """``(beta, regulariser weight)`` at iteration ``it`` (0-based): no regulariser during the
        warmup, then ``beta`` linear from ``beta_start`` to ``beta_end`` (AdaRound's annealing)."""
        start = self.warmup * self.iters
        if it < start:
            return self.beta_start, 0.0
        rel = (it - start) / max(self.iters - start, 1)
        return self.beta_end + (self.beta_start - self.beta_end) * (1.0 - rel), self.round_weight


def _integer_range(quantizer):
    """(q_lo, q_hi) of a weight FakeQuant's integers (before subtracting the zero point)."""
    return (-quantizer.q_max, quantizer.q_max) if quantizer.symmetric else (0.0, quantizer.q_max)


class AdaRoundWeight(nn.Cell):
    """The weight quantizer of a layer while its rounding is learned: ``construct(weight)`` ignores its
    input (the float weight it was built from is fixed) and returns ``step * (clamp(base + h(V) +
    zero, q_lo, q_hi) - zero)``, shaped like the weight ((out, in/group, kh, kw) or (out, in)).
    ``quantizer``: the layer's calibrated weight :class:`~src.quantlib.fake_quant.FakeQuant`, whose
    grid (per output channel) is kept. ``name``: prefix of the rounding variable ``V``'s Parameter."""

    def __init__(self, weight, quantizer, name):
        super().__init__(auto_prefix=False)
        step, zero = quantizer.grid()
        scaled = np.asarray(weight, np.float32) / step
        base = np.floor(scaled)
        rest = np.clip(scaled - base, 1e-4, 1 - 1e-4)
        alpha = -np.log((ZETA - GAMMA) / (rest - GAMMA) - 1.0)
        self.base, self.step, self.zero = Tensor(base.astype(np.float32)), Tensor(step), Tensor(zero)
        self.q_lo, self.q_hi = _integer_range(quantizer)
        self.alpha = Parameter(Tensor(alpha.astype(np.float32)), name=f"{name}.round_alpha")

    def rectified(self):
        """h(V) in [0, 1], shaped like the weight."""
        return ops.clamp(ops.sigmoid(self.alpha) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)

    def step_ms(self):
        """The (fixed) per-channel grid step, shaped (out, 1, ...) like the quantizer's bounds."""
        return self.step

    def construct(self, weight):
        integers = ops.clamp(self.base + self.rectified() + self.zero, self.q_lo, self.q_hi)
        return (integers - self.zero) * self.step

    def regularizer(self, beta):
        """``sum(1 - |2 h - 1|^beta)`` (a 0-d Tensor; 0 when every h is 0 or 1)."""
        return sum_all_ms(1.0 - ops.pow(ops.abs(2.0 * self.rectified() - 1.0), beta))

    def integers(self):
        """The hardened integers (float32 array like the weight): ``base + 1`` where ``V >= 0``, clamped,
        zero point added (the values the exporters store)."""
        up = (self.alpha.asnumpy() >= 0).astype(np.float32)
        return np.clip(self.base.asnumpy() + up + self.zero.asnumpy(), self.q_lo, self.q_hi)

    def hardened(self):
        """The quantized weight with the hardened rounding (float32, on the grid)."""
        step, zero = self.step.asnumpy(), self.zero.asnumpy()
        return ((self.integers() - zero) * step).astype(np.float32)


class DroppedQuant(nn.Cell):
    """QDrop's activation quantizer: ``quantizer(x)`` with each element replaced by ``x`` itself with
    probability ``prob`` (a fresh draw on every call); ``x`` any shape, values unchanged in kind."""

    def __init__(self, quantizer, prob, seed):
        super().__init__(auto_prefix=False)
        self.quantizer = quantizer
        self.prob = float(prob)
        self.uniform = ops.UniformReal(seed=int(seed) + 1, seed2=7)

    def step_ms(self):
        """The wrapped quantizer's grid step."""
        return self.quantizer.step_ms()

    def construct(self, x):
        x_q = self.quantizer(x)
        return ops.select(self.uniform(x.shape) < self.prob, x, x_q)


class _Fresh(nn.Cell):
    """``net`` called through a new Cell: MindSpore keeps one compiled graph per Cell object, so a model
    whose taps moved since its last graph-mode call would otherwise run the old graph (measured:
    the second block's float targets came back as zeros)."""

    def __init__(self, net):
        super().__init__(auto_prefix=False)
        self.net = net

    def construct(self, x):
        return self.net(x)


class _BlockLoss(nn.Cell):
    """Output term (``out_coef`` * mean squared output error; 0 unless the block ends at the output)
    plus ``reg_weight`` * the rounding regularisers of ``rounders`` (:meth:`regularizer`)."""

    def __init__(self, qnet, rounders, out_coef):
        super().__init__(auto_prefix=False)
        self.qnet = qnet
        self.rounders = nn.CellList(rounders)
        self.out_coef = float(out_coef)

    def regularizer(self, beta):
        """Sum of the rounders' regularisers (0-d Tensor)."""
        total = ops.zeros((), ms.float32)
        for rounder in self.rounders:
            total = total + rounder.regularizer(beta)
        return total

    def construct(self, x, fp_out, beta, reg_weight):
        return distance(self.qnet(x) - fp_out, "l2") * self.out_coef + reg_weight * self.regularizer(beta)


class ReconStep(nn.Cell):
    """One reconstruction iteration of a block as a graph: ``construct(x, fp_out, beta, reg_weight)``
    (batch (N, C, h, w), float output, two 0-d float32 Tensors) computes the loss, the gradients of
    ``params`` (the rounding variables and activation bounds), applies ``optimizer`` (one Adam with
    a parameter group each: two optimizers in one graph would share state names, and MindSpore then
    renames every parameter of the model) and returns ``(reconstruction loss, regulariser)`` (0-d
    Tensors; the block-end term included: ``value`` is that tap's Parameter)."""

    # Six parameters: the model, the block's learned parts and the loss's two terms.
    def __init__(self, qnet, rounders, params, optimizer, value, out_coef):
        super().__init__(auto_prefix=False)
        self.loss_cell = _BlockLoss(qnet, rounders, out_coef)
        self.params = ParameterTuple(params)
        self.optimizer = optimizer
        self.value = value
        self.grad = ops.GradOperation(get_by_list=True)

    def construct(self, x, fp_out, beta, reg_weight):
        loss = self.loss_cell(x, fp_out, beta, reg_weight)
        grads = self.grad(self.loss_cell, self.params)(x, fp_out, beta, reg_weight)
        reg = self.loss_cell.regularizer(beta)
        loss = ops.depend(loss, self.optimizer(grads))
        return loss - reg_weight * reg + self.value, reg


def blocks_of(names, block_size):
    """``[(first, end)]`` index ranges of consecutive quantized layers ``names`` (model order),
    ``block_size`` per block (0: one block of all)."""
    size = max(len(names), 1) if block_size <= 0 else block_size
    return [(i, min(i + size, len(names))) for i in range(0, len(names), size)]


def _block_params(names, layers, cfg):
    """``(rounded, activation-bound Parameters)`` of a block's quantized ``layers`` (at ``names``):
    ``rounded`` = ``[(name, layer, AdaRoundWeight)]`` of the layers whose rounding is learned."""
    rounded = [(name, layer, AdaRoundWeight(layer.weight.asnumpy(), layer.weight_quant, f"{names[0]}.{i}"))
               for i, (name, layer) in enumerate(zip(names, layers))
               if cfg.rounding and layer.weight_quant.enabled]
    acts = [p for layer in layers if cfg.act and layer.act_quant.enabled
            for p in (layer.act_quant.lower, layer.act_quant.upper) if cfg.act_lr > 0]
    return rounded, acts


class _BlockInPlace:
    """Puts the block's learning quantizers into ``qnet`` (AdaRound weights, QDrop activations) and
    takes them out again, hardening the rounding into the weights (:meth:`finish`)."""

    def __init__(self, qnet, cfg):
        self.qnet, self.cfg = qnet, cfg
        self.rounded, self.dropped = [], []

    def place(self, names, layers, rounded):
        """Swap the quantizers of the block's ``layers`` (at ``names``; ``rounded`` from
        :func:`_block_params`); each swap is recorded as it is made, so :meth:`finish` undoes a
        partial placement too."""
        cfg = self.cfg
        for name, layer, rounder in rounded:
            self.rounded.append((name, layer, layer.weight_quant, rounder))
            replace_cell(self.qnet, f"{name}.weight_quant", rounder)
        for i, (name, layer) in enumerate((n, l) for n, l in zip(names, layers)
                                          if cfg.drop > 0 and l.act_quant.enabled):
            self.dropped.append((name, layer.act_quant))
            replace_cell(self.qnet, f"{name}.act_quant", DroppedQuant(layer.act_quant, cfg.drop, cfg.seed + i))

    def finish(self, harden=True):
        """Original quantizers back in place; with ``harden`` each rounded weight is replaced by its
        hardened quantized value (else the float weight stays)."""
        for name, layer, quantizer, rounder in self.rounded:
            replace_cell(self.qnet, f"{name}.weight_quant", quantizer, prefix=f"{name}.weight_quant")
            if harden:
                layer.weight.set_data(Tensor(rounder.hardened()))
        for name, quantizer in self.dropped:
            replace_cell(self.qnet, f"{name}.act_quant", quantizer, prefix=f"{name}.act_quant")


def _fit_block(qnet, fp_net, block, draws, cfg, log):
    """Fit one block (``(names, layers, end name or None)``) in place; returns its losses per step."""
    names, layers, end = block
    rounded, act_params = _block_params(names, layers, cfg)
    rounders = [rounder for _, _, rounder in rounded]
    round_params = [rounder.alpha for rounder in rounders]
    if not round_params and not act_params:
        return []
    bounds = [(p, p.asnumpy().copy()) for p in act_params]
    placed, done = _BlockInPlace(qnet, cfg), False
    try:
        placed.place(names, layers, rounded)
        progress = ProgressLog(f"reconstruction block {names[0]}..{names[-1]}", cfg.iters, log)
        losses = _run_block(qnet, fp_net, (rounders, round_params, act_params), end, draws, cfg, progress)
        done = True
    finally:  # an error (or Ctrl-C) leaves the block as it was: no half-learned rounding, bounds restored
        placed.finish(harden=done)
        if not done:
            for param, value in bounds:
                param.set_data(Tensor(value))
    if log:
        rec, reg = np.asarray(losses).T
        log(f"reconstruction block {names[0]}..{names[-1]}: relative error {np.mean(rec[:10]):.5f} -> "
            f"{np.mean(rec[-10:]):.5f}, rounding regulariser {reg[-1]:.1f} after {len(losses)} steps")
    return losses


def _run_block(qnet, fp_net, params, end, draws, cfg, progress):
    rounders, round_params, act_params = params
    fp_cells = dict(fp_net.cells_and_names())  # the float model's cells as they are now (taps come and go)
    with pynative_mode():
        out, feats = layer_inputs(fp_net, [fp_cells[end]] if end else [], Tensor(draws.patches[:draws.size]))
    shapes = [tuple(f.shape) for f in feats]
    groups = [{"params": group, "lr": rates} for group, rates in
              ((round_params, [cfg.round_lr] * cfg.iters), (act_params, cosine_rates(cfg.act_lr, 0.0, cfg.iters))) if group]
    with tapped(qnet, fp_net, [end] if end else [], shapes, "l2", through=False) as (match, floats), graph_mode():
        cache = FeatureCache(_Fresh(fp_net), floats, draws.patches, draws.size, 0.0, False, 2)
        if end:
            cache.weight = 1.0 / max(float(np.mean(np.square(cache.features[0]))), 1e-12)
        out_coef = 0.0 if end else 1.0 / max(float(np.mean(np.square(cache.out))), 1e-12)
        value = match[0].value if end else Parameter(Tensor(np.float32(0)), name="recon_value", requires_grad=False)
        step = ReconStep(qnet, rounders, round_params + act_params, nn.Adam(groups, learning_rate=cfg.round_lr), value,
                         out_coef)
        losses = []
        for it in range(cfg.iters):
            idx = draws.indices()
            fp_out = cache.load(idx, match)
            beta, weight = cfg.schedule(it)
            rec, reg = step(Tensor(draws.patches[idx]), fp_out, Tensor(np.float32(beta)), Tensor(np.float32(weight)))
            losses.append((float(rec.asnumpy()), float(reg.asnumpy())))
            progress.update(it + 1, f"relative error {np.mean([r for r, _ in losses[-10:]]):.5f}")
    return losses


def _end_reads_block(fp_net, block_layers, end, x):
    """Whether the input of the layer ``end`` (a cell of ``fp_net``) depends on the float cells
    ``block_layers``: their weights are zeroed for one PyNative pass on ``x`` (and restored) and the
    end's input compared. False for a block that is not upstream of the next layer in
    registration order (parallel branches), whose output the network output then stands for."""
    with pynative_mode():
        before = layer_inputs(fp_net, [end], x)[1][0].asnumpy()
        saved = [(layer.weight, layer.weight.asnumpy().copy()) for layer in block_layers]
        try:
            for weight, value in saved:
                weight.set_data(Tensor(np.zeros_like(value)))
            after = layer_inputs(fp_net, [end], x)[1][0].asnumpy()
        finally:
            for weight, value in saved:
                weight.set_data(Tensor(value))
    return not np.array_equal(before, after)


def _block_end(fp_net, fp_cells, names, span, x):
    """The tapped end of the block ``names[first:stop]`` (``span``): the next quantized layer when its
    input depends on the block, else None (the network output). ``fp_cells``: ``fp_net``'s name -> cell."""
    first, stop = span
    if stop >= len(names):
        return None
    reads = _end_reads_block(fp_net, [fp_cells[n] for n in names[first:stop]], fp_cells[names[stop]], x)
    return names[stop] if reads else None


def reconstruct(qnet, fp_net, patches, cfg=ReconConfig(), log=None):
    """Fit ``qnet`` (calibrated, :func:`~src.quantlib.calibrate.calibrate` and optionally PaC) to
    ``fp_net`` (the same float model, deploy form) block by block on ``patches`` (float32 array
    (N, C, h, w), LR images in [0, 1], N >= ``cfg.batch``), in place: learned rounding baked
    into the quantized layers' weights, activation bounds moved (module notes). Weight bounds are
    not changed. Returns ``{block's first layer: [(reconstruction loss, regulariser) per step]}``; ``log(str)`` gets one line per
    block. A block is fitted to the input of the next quantized layer in registration order when
    that input depends on it (every chain of the zoo's deploy forms), else to the network output.
    An error during a block leaves it as it was (float weights, bounds restored).
    ``ValueError`` when a quantized layer has no namesake in ``fp_net`` or ``patches`` has fewer
    than ``cfg.batch`` patches."""
    named = quant_layers(qnet)
    names = [n for n, _ in named]
    fp_cells = dict(fp_net.cells_and_names())
    if any(n not in fp_cells for n in names):
        raise ValueError("the float model's layers do not match the quantized model's")
    if len(patches) < cfg.batch:
        raise SettingError("ReconConfig", "batch", cfg.batch, f"at most the {len(patches)} calibration patches")
    qnet.set_train(False)
    fp_net.set_train(False)
    draws = BatchDraws(patches, cfg)
    history = {}
    probe = Tensor(patches[:1])
    for first, stop in blocks_of(names, cfg.block):
        end = _block_end(fp_net, fp_cells, names, (first, stop), probe)
        if end is None and stop < len(names) and log:
            log(f"reconstruction block {names[first]}..{names[stop - 1]}: {names[stop]} does not read it; "
                "fitted to the network output instead")
        block = (names[first:stop], [layer for _, layer in named[first:stop]], end)
        history[names[first]] = _fit_block(qnet, fp_net, block, draws, cfg, log)
    return history


__all__ = ["ReconConfig", "AdaRoundWeight", "DroppedQuant", "ReconStep", "blocks_of", "reconstruct"]
