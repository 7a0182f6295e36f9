"""One compiled optimisation step: loss scaling, gradient all-reduce and clipping, freezing,
a finite-value guard and weight EMA.

- ``frozen``: parameters whose gradients are zeroed while the ``freeze`` input is 1
  (ETDS freezes its residual stream for the first iterations). With Adam their
  moments stay zero, so they do not move at all while frozen.
- ``loss_scale``: ``"none"``, ``"static"`` (gradients of ``loss * scale``, divided
  back) or ``"dynamic"`` (the scale halves on a non-finite step and doubles after
  ``scale_window`` finite ones). Used with mixed precision on GPU/Ascend.
- ``reduce_grads``: averages gradients over data-parallel workers (msrun).
- ``clip_norm`` > 0: gradients are clipped to that global L2 norm.
- The update is applied only when the loss and every gradient are finite; the step
  returns that flag so the trainer can log the skipped step and stop after too many
  bad steps in a row. (This tensor-dependent branch also makes the compiled CPU step
  faster than an unconditional update.)
- After every applied update the weights (and the EMA) are checked too: a finite
  gradient can still give non-finite weights (a huge learning rate, Adam's bias
  correction with ``beta1`` near 1). The result is kept in the ``weights_finite``
  Parameter (1.0 / 0.0), which the trainer reads after each step; it is not part of
  the saved state.
- ``ema_decay`` > 0 keeps an exponential moving average of the trainable weights,
  updated after every applied step (used for validation and checkpoints).

All state (optimizer moments, EMA, loss scale) is held in Parameters of this Cell,
so saving the Cell saves everything a resumed run needs.

:func:`use_deterministic_prelu` replaces the PReLU of a network by
:class:`DeterministicPReLU` (same forward values, reproducible slope gradient); the
trainer applies it on CPU, where MindSpore's PReLU gradient is not reproducible.
"""
import numpy as np
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops
import mindspore as ms
from src.errors import UserError

LOSS_SCALES = ("none", "static", "dynamic")
TRANSIENT_PARAMS = ("weights_finite",)  # step flags: neither saved in nor read from a training state

_mask_grad = ops.MultitypeFuncGraph("mask_grad")
_ema_update = ops.MultitypeFuncGraph("ema_update")
_all_finite = ops.MultitypeFuncGraph("all_finite")
_unscale = ops.MultitypeFuncGraph("unscale")


@_mask_grad.register("Tensor", "Tensor", "Tensor")
def _mask(freeze, is_frozen, grad):
    return grad * (1.0 - freeze * is_frozen)


@_ema_update.register("Number", "Tensor", "Tensor")
def _ema(decay, ema, weight):
    return ops.assign(ema, ema * decay + weight * (1.0 - decay))


@_all_finite.register("Tensor")
def _finite(grad):
    return ops.isfinite(grad).all()


@_unscale.register("Tensor", "Tensor")
def _divide(scale, grad):
    return grad / ops.cast(scale, grad.dtype)


class TrainStep(nn.Cell):
    # 9 parameters: a compiled Cell takes its constants at construction (graph mode cannot read a section
    # object inside construct), and tests build it with only the parts they exercise (keyword defaults).
    def __init__(self, loss_cell, optimizer, frozen=(), ema_decay=0.0, clip_norm=0.0,
                 loss_scale="none", loss_scale_value=65536.0, scale_window=1000, reduce_grads=False):
        super().__init__(auto_prefix=False)
        if loss_scale not in LOSS_SCALES:
            raise UserError(f"loss_scale must be one of {LOSS_SCALES}, not '{loss_scale}'")
        self.loss_cell = loss_cell
        self.optimizer = optimizer
        self.weights = optimizer.parameters
        self.grad = ops.GradOperation(get_by_list=True, sens_param=True)
        self.hyper_map = ops.HyperMap()
        frozen_names = {p.name for p in frozen}
        self.frozen_flags = tuple(Tensor(1.0 if p.name in frozen_names else 0.0, ms.float32) for p in self.weights)
        self.use_ema = ema_decay > 0
        self.ema_decay = float(ema_decay)
        self.ema = ParameterTuple(
            [Parameter(p.data.copy(), name=f"ema.{p.name}", requires_grad=False) for p in self.weights]
            if self.use_ema else [])
        self.clip_norm = float(clip_norm)
        self.use_clip = self.clip_norm > 0
        self.scaled = loss_scale != "none"
        self.dynamic_scale = loss_scale == "dynamic"
        self.loss_scale = Parameter(Tensor(loss_scale_value if loss_scale != "none" else 1.0, ms.float32),
                                    name="loss_scale", requires_grad=False)
        self.good_steps = Parameter(Tensor(0, ms.int32), name="loss_scale_good_steps", requires_grad=False)
        self.scale_window = int(scale_window)
        self.reduce_grads = bool(reduce_grads)
        self.reducer = nn.DistributedGradReducer(self.weights, mean=True) if self.reduce_grads else None
        self.weights_finite = Parameter(Tensor(1.0, ms.float32), name="weights_finite", requires_grad=False)

    def construct(self, lr, hr, freeze):
        loss = self.loss_cell(lr, hr)
        sens = ops.fill(loss.dtype, loss.shape, 1.0) * ops.cast(self.loss_scale, loss.dtype)
        grads = self.grad(self.loss_cell, self.weights)(lr, hr, sens)
        if self.scaled:  # without scaling the scale is 1: skip a division of every gradient
            grads = self.hyper_map(ops.partial(_unscale, self.loss_scale), grads)
        if self.reduce_grads:
            grads = self.reducer(grads)
        grads = self.hyper_map(ops.partial(_mask_grad, freeze), self.frozen_flags, grads)
        finite = ops.isfinite(loss) and ops.stack(self.hyper_map(_all_finite, grads)).all()
        if finite:
            if self.use_clip:
                grads = ops.clip_by_global_norm(grads, self.clip_norm)
            self.optimizer(grads)
            if self.use_ema:
                self.hyper_map(ops.partial(_ema_update, self.ema_decay), self.ema, self.weights)
            healthy = ops.stack(self.hyper_map(_all_finite, self.weights)).all()
            if self.use_ema:
                healthy = healthy and ops.stack(self.hyper_map(_all_finite, self.ema)).all()
            ops.assign(self.weights_finite, ops.cast(healthy, ms.float32))
        if self.dynamic_scale:
            self._update_scale(finite)
        return loss, finite

    def _update_scale(self, finite):
        if finite:
            ops.assign_add(self.good_steps, Tensor(1, ms.int32))
            if self.good_steps >= self.scale_window:
                ops.assign(self.loss_scale, self.loss_scale * 2.0)
                ops.assign(self.good_steps, Tensor(0, ms.int32))
        else:
            ops.assign(self.loss_scale, ops.maximum(self.loss_scale / 2.0, Tensor(1.0, ms.float32)))
            ops.assign(self.good_steps, Tensor(0, ms.int32))

    def ema_weights(self):
        """``{parameter name: EMA value}`` (empty without EMA)."""
        return {e.name[len("ema."):]: e.data.asnumpy() for e in self.ema}

    def state_values(self):
        """``{name: array}`` of every parameter the step holds (weights, optimizer, EMA, loss scale).

        The ``TRANSIENT_PARAMS`` flags are left out.
        """
        return {p.name: p.data.asnumpy() for p in self.get_parameters() if p.name not in TRANSIENT_PARAMS}

    def weights_are_finite(self):
        """False when the last applied update left a non-finite weight (or EMA) value."""
        return bool(self.weights_finite.asnumpy() > 0.5)

    def non_finite_weights(self):
        """Names of the weights (and EMA tensors) holding a NaN or infinity (host-side check)."""
        return [p.name for p in list(self.weights) + list(self.ema) if not np.isfinite(p.data.asnumpy()).all()]


class DeterministicPReLU(nn.PReLU):
    """``nn.PReLU`` computed as ``relu(x) - w * relu(-x)``: the same values, a reproducible gradient.

    The forward values are bit-identical to ``nn.PReLU`` (one of the two terms is
    an exact zero). The slope gradient becomes an ordinary reduction instead of
    MindSpore's CPU ``PReLUGrad`` kernel, whose per-channel sum is accumulated by
    several threads into one buffer, in an order that changes from run to run
    (three identical SESR runs gave different weights). Only the input gradient at
    exactly ``x == 0`` differs (0 here, ``w * dy`` in ``PReLUGrad``).
    Input: ``(N, C, ...)`` (or any shape for a single shared slope).
    """

    def construct(self, x):
        w = ops.cast(self.w, x.dtype)
        if x.ndim > 1:
            w = w.reshape((1, -1) + (1,) * (x.ndim - 2))
        return ops.relu(x) - w * ops.relu(-x)


def use_deterministic_prelu(net):
    """Turn every ``nn.PReLU`` cell of ``net`` into a :class:`DeterministicPReLU` in place.

    The cells keep their parameters (names, values) and stay ``nn.PReLU`` instances,
    so checkpoints, :func:`~src.models.registry.to_deploy` and equalisation see no
    difference. Returns the number of cells changed. Call before compiling a step.
    """
    changed = 0
    for _, cell in net.cells_and_names():
        if type(cell) is nn.PReLU:  # pylint: disable=unidiomatic-typecheck  (subclasses keep their own forward)
            cell.__class__ = DeterministicPReLU
            changed += 1
    return changed
