"""The compiled PaC step: pixel-aware calibration as two graph-mode Cells per phase.

MindSpore compiles forward hooks away in graph mode, so the feature taps of PaC's loss are
cells placed in the networks themselves, for the duration of the calibration
(:func:`tapped`): each tapped layer ``l`` (every quantized layer but the first) is wrapped so
that

- in the float model (:class:`FloatTap`) its input ``t_l`` (N, C, h, w) is written to a
  Parameter;
- in the quantized model (:class:`MatchTap`, through :class:`FeatureMatch`) its input ``f_l``
  passes unchanged, and the backward pass adds the gradient of the feature term ``c_l * d(f_l - t_l)`` to the gradient
  flowing back through ``f_l`` (``d`` = mean absolute or mean squared error, ``c_l`` = the
  term's coefficient, see below). This is the exact gradient of
  ``loss = d(q(x) - fp(x)) + sum_l c_l * d(f_l - t_l)``: ``f_l`` reaches the loss through
  the output and through its own term, and the chain rule adds the two.

The float model's output and every ``t_l`` are computed once per patch by :class:`FeatureCache`
(graph mode, float taps in place) and loaded per drawn batch with the coefficients
``c_l = feature_weight / L / s_l``, ``s_l`` = mean|t_l| / mean|fp(x)| (squared for L2) or 1.
:class:`PaCStep` then runs the quantized model, the loss, the gradients of the phase's bounds
and Adam as one graph. The reported loss adds the feature terms' values (each written by its
tap during the forward pass), so it equals the PyNative reference's loss
(:func:`src.quantlib.pac.pixel_aware_calibration` with ``graph=False``, which reads the same
taps with forward hooks); tests compare the two paths' bounds.
"""
from contextlib import contextmanager

import numpy as np
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops

from src.quantlib.grid import sum_all_ms
from src.quantlib.quant_layers import replace_cell


def distance(diff, loss):
    """Mean error of a Tensor of differences: mean |diff| (``loss="l1"``) or mean diff^2 (``"l2"``)
    (a 0-d Tensor; :func:`~src.quantlib.grid.sum_all_ms`, MindSpore's full mean is ~10x slower)."""
    return sum_all_ms(ops.abs(diff) if loss == "l1" else ops.square(diff)) / diff.size


class FeatureMatch(nn.Cell):
    """Identity on ``x`` (the tapped layer's input, (N, C, h, w)) whose backward pass adds
    ``coef * d'(x - target)``: the gradient of the feature term ``coef * d(x - target)``
    (``d`` as :func:`distance`). ``target`` and ``coef`` are Parameters set by
    :class:`FeatureCache` before each step, passed in as inputs (a custom ``bprop`` may not read
    Parameters); they get no gradient. ``through=False``: the gradient arriving from the layers
    after the tap is dropped, so the feature term is the whole loss of everything before the tap
    (block reconstruction, :mod:`src.quantlib.reconstruct`)."""

    def __init__(self, loss, through=True):
        super().__init__(auto_prefix=False)
        self.l1 = loss == "l1"
        self.through = bool(through)

    def construct(self, x, target, coef):
        return x

    def bprop(self, x, target, coef, out, dout):
        diff = x - target
        grad = (ops.sign(diff) if self.l1 else 2.0 * diff) * (coef / x.size)
        if self.through:
            grad = dout + grad
        return grad, ops.zeros_like(target), ops.zeros_like(coef)


class FloatTap(nn.Cell):
    """The float model's tap: ``layer`` (a conv) whose input is written to ``target`` (a Parameter of
    the input's (N, C, h, w) shape) on every call. Parameter names are left as they were."""

    def __init__(self, layer, target):
        super().__init__(auto_prefix=False)
        self.layer = layer
        self.target = target

    def construct(self, x):
        return self.layer(ops.depend(x, ops.assign(self.target, x)))


class MatchTap(nn.Cell):
    """The quantized model's tap: ``layer`` (a quantized conv) with :class:`FeatureMatch` on its input
    (``target`` and the coefficient ``coef``, a 0-d Parameter), and the feature term's value
    ``coef * d(x - target)`` written to ``value`` (for the loss report; no gradient through it);
    ``through`` as :class:`FeatureMatch`'s."""

    # Seven parameters: the layer, its three state Parameters and the loss's two settings.
    def __init__(self, layer, target, coef, value, loss, through=True):
        super().__init__(auto_prefix=False)
        self.layer = layer
        self.target = target
        self.coef = coef
        self.value = value
        self.loss = loss
        self.match = FeatureMatch(loss, through)

    def construct(self, x):
        term = ops.stop_gradient(distance(x - self.target, self.loss) * self.coef)
        x = ops.depend(x, ops.assign(self.value, term))
        return self.layer(self.match(x, self.target, self.coef))


class _OutputLoss(nn.Cell):
    def __init__(self, qnet, loss):
        super().__init__(auto_prefix=False)
        self.qnet = qnet
        self.loss = loss

    def construct(self, x, fp_out):
        return distance(self.qnet(x) - fp_out, self.loss)


class PaCStep(nn.Cell):
    """One PaC iteration on the bounds ``params`` of ``qnet``: ``construct(x, fp_out)`` (the batch and
    :class:`FeatureCache`'s float output, both (N, C, ...) float32) computes the loss, its gradients,
    applies ``optimizer`` (Adam over ``params``) and returns the loss with the feature terms'
    values added (a float32 scalar)."""

    def __init__(self, qnet, taps, params, optimizer, loss):
        super().__init__(auto_prefix=False)
        self.loss_cell = _OutputLoss(qnet, loss)
        self.values = ParameterTuple([tap.value for tap in taps])
        self.params = ParameterTuple(params)
        self.optimizer = optimizer
        self.grad = ops.GradOperation(get_by_list=True)

    def construct(self, x, fp_out):
        loss = self.loss_cell(x, fp_out)
        grads = self.grad(self.loss_cell, self.params)(x, fp_out)
        loss = ops.depend(loss, self.optimizer(grads))
        for value in self.values:
            loss = loss + value
        return loss


def _state(name, shape=()):
    return Parameter(Tensor(np.zeros(shape, np.float32)), name=name, requires_grad=False)


class FeatureCache:
    """The float model's outputs and tapped features on ``patches`` (float32 (n, C, h, w)), computed
    once (the float model does not change during PaC; each patch is drawn ~10 times in 500 steps
    of two from 100), in batches of ``batch_size`` through ``fp_net`` with :class:`FloatTap` s in
    place (``taps``) in graph mode.

    :meth:`load` puts a drawn batch's features into the :class:`MatchTap` s' ``target`` (shared with
    the float taps) and their coefficients into ``coef``: ``feature_weight / L / s_l`` with
    ``s_l = (mean|t_l| / mean|fp(x)|)^power`` (``relative``) or 1, computed on the host from
    per-patch mean magnitudes (the mean over a batch of equal-size patches is the mean of their
    means); it returns the float output. Targets go through the host on purpose: a compiled
    step reading Parameters that another graph assigned saw stale values now and then
    (measured: the weight phase drifted from the PyNative reference after a few steps)."""

    # Seven parameters: the float model and its taps, the data and the three numbers of the feature term.
    def __init__(self, fp_net, taps, patches, batch_size, feature_weight, relative, power):
        n = len(patches)
        outs, feats = [], [[] for _ in taps]
        for start in range(0, n, batch_size):
            idx = np.arange(start, start + batch_size) % n  # the last batch wraps to keep the shape
            keep = min(batch_size, n - start)
            outs.append(fp_net(Tensor(patches[idx])).asnumpy()[:keep])
            for store, tap in zip(feats, taps):
                store.append(tap.target.asnumpy()[:keep].copy())  # asnumpy() may share the buffer
        self.out = np.concatenate(outs)
        self.features = [np.concatenate(f) for f in feats]
        self.out_mag = np.abs(self.out).reshape(n, -1).mean(axis=1)
        self.magnitudes = [np.abs(f).reshape(n, -1).mean(axis=1) for f in self.features]
        self.weight = float(feature_weight) / max(len(taps), 1)
        self.relative, self.power = bool(relative), power

    @staticmethod
    def fits(shapes, out_shape, n, batch_size, budget=1 << 30):
        """Whether the cache of ``n`` patches (tapped input ``shapes`` and output ``out_shape`` at
        ``batch_size``) stays under ``budget`` bytes (1 GiB: ABPN x3 needs 0.3 GiB for 100
        patches, an EDSR with 33 taps of 64 channels 3.5 GiB, which then runs the float model
        on each drawn batch instead)."""
        per_patch = sum(int(np.prod(s)) for s in list(shapes) + [out_shape]) // batch_size
        return per_patch * 4 * n <= budget

    def load(self, idx, match_taps):
        """Targets and coefficients of patches ``idx`` (int array) set in ``match_taps``; returns their
        float output (Tensor (len(idx), C, H, W))."""
        out_mag = max(float(self.out_mag[idx].mean()), 1e-6)
        for tap, feature, magnitude in zip(match_taps, self.features, self.magnitudes):
            tap.target.set_data(Tensor(feature[idx]))
            scale = (max(float(magnitude[idx].mean()), 1e-6) / out_mag) ** self.power if self.relative else 1.0
            tap.coef.set_data(Tensor(np.float32(self.weight / scale)))
        return Tensor(self.out[idx])


@contextmanager
def tapped(qnet, fp_net, names, shapes, loss, through=True):
    """Wrap the layers ``names`` (paths in both models) of ``qnet`` and ``fp_net`` in taps for the
    block; yields ``(match_taps, float_taps)``. ``shapes``: the (N, C, h, w) of each tapped
    input at the step's batch size; ``through`` as :class:`FeatureMatch`'s. The original cells (and their parameter names) are back
    in place when the block ends, also on errors."""
    match_taps, float_taps = [], []
    originals = []
    q_cells, fp_cells = dict(qnet.cells_and_names()), dict(fp_net.cells_and_names())
    try:
        for name, shape in zip(names, shapes):
            # named under the layer's path: MindSpore's CellList infers its prefix from its cells' names
            target, coef, value = _state(f"{name}.pac_target", shape), _state(f"{name}.pac_coef"), _state(f"{name}.pac_value")
            q_layer, fp_layer = q_cells[name], fp_cells[name]
            originals.append((name, q_layer, fp_layer))
            match_taps.append(MatchTap(q_layer, target, coef, value, loss, through))
            float_taps.append(FloatTap(fp_layer, target))
            replace_cell(qnet, name, match_taps[-1])
            replace_cell(fp_net, name, float_taps[-1])
        yield match_taps, float_taps
    finally:
        for name, q_layer, fp_layer in originals:
            replace_cell(qnet, name, q_layer, prefix=name)
            replace_cell(fp_net, name, fp_layer, prefix=name)


__all__ = ["FeatureMatch", "FloatTap", "MatchTap", "FeatureCache", "PaCStep", "tapped", "distance"]
