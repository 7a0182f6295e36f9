"""Adder layer: forward, the published AdderNet backward (checked numerically), deploy folding."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn

from src.models.adder import AdderBlock, AdderDeploy, AdderFunction
from src.models.registry import create_model, to_deploy

RNG = np.random.default_rng(0)


def columns_np(x, k):
    n, c, h, w = x.shape
    p = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    cols = np.stack([xp[:, :, i:i + h, j:j + w] for i in range(k) for j in range(k)], axis=2)
    return cols.reshape(n, c * k * k, h * w)


def adder_np(x, w):
    cols = columns_np(x, w.shape[2])  # N, CKK, L
    wc = w.reshape(w.shape[0], -1)
    out = -np.abs(cols[:, None] - wc[None, :, :, None]).sum(2)
    return out.reshape(x.shape[0], w.shape[0], x.shape[2], x.shape[3])


def surrogate(x, w, g):
    """S = sum g * (-1/2 sum (X - W)^2): the function whose gradients the AdderNet rule uses."""
    cols = columns_np(x, w.shape[2])
    wc = w.reshape(w.shape[0], -1)
    sq = -0.5 * ((cols[:, None] - wc[None, :, :, None]) ** 2).sum(2)
    return float((sq.reshape(g.shape) * g).sum())


def numeric_grad(f, arr, eps=1e-4):
    grad = np.zeros_like(arr)
    for idx in np.ndindex(arr.shape):
        old = arr[idx]
        arr[idx] = old + eps
        up = f()
        arr[idx] = old - eps
        down = f()
        arr[idx] = old
        grad[idx] = (up - down) / (2 * eps)
    return grad


class _Weighted(nn.Cell):
    """sum(g * adder(x, w)) so that dout = g."""

    def __init__(self, channels, eta):
        super().__init__()
        self.op = AdderFunction(channels, 3, eta)

    def construct(self, x, w, g):
        return (self.op(x, w) * g).sum()


def _grads(x, w, g, eta=0.2):
    fn = _Weighted(x.shape[1], eta)
    dx, dw = ms.grad(fn, grad_position=(0, 1))(Tensor(x), Tensor(w), Tensor(g))
    return dx.asnumpy().astype(np.float64), dw.asnumpy().astype(np.float64)


def test_forward_matches_numpy():
    x = RNG.standard_normal((2, 3, 6, 5)).astype(np.float32)
    w = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
    out = AdderFunction(3, 3)(Tensor(x), Tensor(w)).asnumpy()
    np.testing.assert_allclose(out, adder_np(x, w), rtol=1e-5, atol=1e-4)


def test_backward_is_published_rule_checked_numerically():
    # |X - W| < 1 everywhere (incl. zero padding), so HardTanh is inactive and the
    # input gradient must equal the surrogate's gradient exactly.
    x = (RNG.random((1, 2, 5, 4)) * 0.45).astype(np.float64)
    w = (RNG.random((3, 2, 3, 3)) * 0.45).astype(np.float64)
    g = RNG.standard_normal((1, 3, 5, 4))
    dx, dw = _grads(x.astype(np.float32), w.astype(np.float32), g.astype(np.float32), eta=0.2)
    num_dx = numeric_grad(lambda: surrogate(x, w, g), x)
    num_dw = numeric_grad(lambda: surrogate(x, w, g), w)
    np.testing.assert_allclose(dx, num_dx, rtol=1e-4, atol=1e-4)
    scaled = num_dw / np.linalg.norm(num_dw) * 0.2 * np.sqrt(w.size)  # adaptive learning-rate factor
    np.testing.assert_allclose(dw, scaled, rtol=1e-4, atol=1e-5)
    assert np.linalg.norm(dw) == pytest.approx(0.2 * np.sqrt(w.size), rel=1e-5)


def test_input_gradient_is_hardtanh_clipped():
    x = (RNG.standard_normal((1, 1, 4, 4)) * 3).astype(np.float32)
    w = (RNG.standard_normal((2, 1, 3, 3)) * 3).astype(np.float32)
    g = RNG.standard_normal((1, 2, 4, 4)).astype(np.float32)
    dx, _ = _grads(x, w, g)
    cols = columns_np(x.astype(np.float64), 3)
    diff = cols[:, None] - w.reshape(2, -1)[None, :, :, None]
    gg = g.reshape(1, 2, 1, 16)
    dcols_clip = (np.clip(-diff, -1, 1) * gg).sum(1)
    dcols_raw = (-diff * gg).sum(1)

    def fold(dc):
        out = np.zeros((1, 1, 6, 6))
        dc = dc.reshape(1, 1, 9, 4, 4)
        for i in range(3):
            for j in range(3):
                out[:, :, i:i + 4, j:j + 4] += dc[:, :, i * 3 + j]
        return out[:, :, 1:5, 1:5]
    np.testing.assert_allclose(dx, fold(dcols_clip), rtol=1e-4, atol=1e-4)
    assert np.abs(fold(dcols_raw) - dx).max() > 0.1  # clipping was active


def test_adder_block_folds_batch_norm_into_deploy():
    block = AdderBlock(4)
    block.bn.moving_mean.set_data(Tensor(RNG.standard_normal(4).astype(np.float32) * 3))
    block.bn.moving_variance.set_data(Tensor((RNG.random(4) + 0.5).astype(np.float32) * 10))
    block.bn.gamma.set_data(Tensor(RNG.standard_normal(4).astype(np.float32)))
    block.bn.beta.set_data(Tensor(RNG.standard_normal(4).astype(np.float32)))
    block.set_train(False)
    deploy = AdderDeploy(4)
    deploy.load_from_block(block)
    x = Tensor(RNG.random((1, 4, 6, 6)).astype(np.float32))
    np.testing.assert_allclose(deploy(x).asnumpy(), block(x).asnumpy(), rtol=1e-5, atol=1e-4)


def test_adder_sesr_train_equals_deploy_and_trains():
    net = create_model("sesr", "M3", 2, form="train", linear_block_type="collapsed_adder", feature_size=16)
    for cell in net.blocks:
        cell.adder.weight.set_data(Tensor((RNG.standard_normal(cell.adder.weight.shape) * 0.05).astype(np.float32)))
        cell.bn.moving_variance.set_data(Tensor(np.full(16, 50.0, np.float32)))
        cell.bn.moving_mean.set_data(Tensor(np.full(16, -5.0, np.float32)))
    net.set_train(False)
    x = Tensor(RNG.random((1, 1, 9, 8)).astype(np.float32))
    deploy = to_deploy(net)
    assert type(deploy.body[0]).__name__ == "AdderDeploy"
    np.testing.assert_allclose(deploy(x).asnumpy(), net(x).asnumpy(), atol=1e-5)
    loss_cell = nn.WithLossCell(net, nn.L1Loss())
    loss_cell.set_train(True)
    params = net.trainable_params()
    grads = ms.grad(loss_cell, grad_position=None, weights=params)(
        Tensor(RNG.random((2, 1, 8, 8)).astype(np.float32)), Tensor(RNG.random((2, 1, 16, 16)).astype(np.float32)))
    adder_grad = grads[[p.name for p in params].index("blocks.0.adder.weight")].asnumpy()
    assert np.isfinite(adder_grad).all() and np.linalg.norm(adder_grad) == pytest.approx(
        0.2 * np.sqrt(adder_grad.size), rel=1e-4)
