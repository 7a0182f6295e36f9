"""One compiled optimisation step with freezing, a finite-value guard and weight EMA.

- ``frozen``: parameters whose gradients are zeroed while the ``freeze`` input is 1
  (ETDS freezes its residual stream for the first iterations). With Adam their
  moments stay zero, so they do not move at all while frozen.
- The update is applied only when the loss and every gradient are finite; the step
  returns that flag so the trainer can stop after too many bad steps in a row.
- ``ema_decay`` > 0 keeps an exponential moving average of the trainable weights,
  updated after every applied step (used for validation and checkpoints).
"""
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops
import mindspore as ms

_mask_grad = ops.MultitypeFuncGraph("mask_grad")
_ema_update = ops.MultitypeFuncGraph("ema_update")
_all_finite = ops.MultitypeFuncGraph("all_finite")


@_mask_grad.register("Tensor", "Tensor", "Tensor")
def _mask(freeze, is_frozen, grad):
    return grad * (1.0 - freeze * is_frozen)


@_ema_update.register("Number", "Tensor", "Tensor")
def _ema(decay, ema, weight):
    return ops.assign(ema, ema * decay + weight * (1.0 - decay))


@_all_finite.register("Tensor")
def _finite(grad):
    return ops.isfinite(grad).all()


class TrainStep(nn.Cell):
    def __init__(self, loss_cell, optimizer, frozen=(), ema_decay=0.0):
        super().__init__(auto_prefix=False)
        self.loss_cell = loss_cell
        self.optimizer = optimizer
        self.weights = optimizer.parameters
        self.grad = ops.GradOperation(get_by_list=True)
        self.hyper_map = ops.HyperMap()
        frozen_names = {p.name for p in frozen}
        self.frozen_flags = tuple(Tensor(1.0 if p.name in frozen_names else 0.0, ms.float32) for p in self.weights)
        self.use_ema = ema_decay > 0
        self.ema_decay = float(ema_decay)
        self.ema = ParameterTuple(
            [Parameter(p.data.copy(), name=f"ema.{p.name}", requires_grad=False) for p in self.weights]
            if self.use_ema else [])

    def construct(self, lr, hr, freeze):
        loss = self.loss_cell(lr, hr)
        grads = self.grad(self.loss_cell, self.weights)(lr, hr)
        grads = self.hyper_map(ops.partial(_mask_grad, freeze), self.frozen_flags, grads)
        finite = ops.isfinite(loss) and ops.stack(self.hyper_map(_all_finite, grads)).all()
        if finite:
            self.optimizer(grads)
            if self.use_ema:
                self.hyper_map(ops.partial(_ema_update, self.ema_decay), self.ema, self.weights)
        return loss, finite

    def ema_weights(self):
        """``{parameter name: EMA value}`` (empty without EMA)."""
        return {e.name[len("ema."):]: e.data.asnumpy() for e in self.ema}
