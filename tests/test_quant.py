import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn

from src.models.registry import create_model
from src.quantlib.calibrate import calibrate, collect_activation_bounds
from src.quantlib.quant_layers import QuantConfig, quantize_model
from src.quantlib.fake_quant import FakeQuant
from src.quantlib.grid import quantize_np
from src.quantlib.observers import dbdc_bounds, dbdc_from_histogram, omse_bounds
from src.weights.checkpoint import save_checkpoint, read_checkpoint

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("bits", [2, 4, 6, 8])
def test_asymmetric_rounding_and_clipping_exact(bits):
    fq = FakeQuant(bits, symmetric=False)
    lower, upper = -0.37, 1.21
    fq.set_bounds(lower, upper)
    x = np.concatenate([np.linspace(-1, 2, 997), RNG.standard_normal(500)]).astype(np.float32)
    out = fq(Tensor(x)).asnumpy()
    np.testing.assert_allclose(out, quantize_np(x, lower, upper, bits, False), atol=1e-6)
    q_max = 2 ** bits - 1
    step = (upper - lower) / q_max
    zero = np.floor(-lower / step + 0.5)
    assert len(np.unique(np.round(out / step, 4))) <= q_max + 1  # at most 2^b levels
    assert out.max() == pytest.approx((q_max - zero) * step, abs=1e-6)  # clipped above
    assert out.min() == pytest.approx(-zero * step, abs=1e-6)  # clipped below
    assert 0.0 in out  # zero is exactly representable
    grid = ((np.arange(q_max + 1) - zero) * step).astype(np.float32)
    np.testing.assert_allclose(fq(Tensor(grid)).asnumpy(), grid, atol=1e-6)  # grid points are fixed points


def test_symmetric_per_channel_and_half_up_rounding():
    fq = FakeQuant(4, symmetric=True, channels=2)
    fq.set_bounds([-0.7, -2.0], [0.7, 1.4])  # symmetric: upper = max(|l|, |u|)
    lo, up = fq.bounds()
    np.testing.assert_allclose(up.ravel(), [0.7, 2.0])
    step = np.array([0.7, 2.0]) / 7
    x = np.zeros((2, 1, 1, 4), np.float32)
    x[:, 0, 0] = np.stack([step * k for k in (0.5, 1.5, -0.5, 9.0)], axis=1)
    out = fq(Tensor(x)).asnumpy()[:, 0, 0]
    expected = np.stack([step * k for k in (1, 2, 0, 7)], axis=1)  # floor(v + 0.5): 0.5 -> 1, -0.5 -> 0
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_bounds_receive_gradients_with_lsq_scale():
    x = Tensor(np.linspace(-2, 2, 101).astype(np.float32))

    class SumOf(nn.Cell):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def construct(self, t):
            return self.inner(t).sum()

    def grads(factor_elements):
        fq = FakeQuant(4, symmetric=False, elements_per_bound=factor_elements)
        fq.set_bounds(-1.0, 1.0)
        g = ms.grad(SumOf(fq), grad_position=None, weights=[fq.lower, fq.upper])(x)
        return [v.asnumpy().item() for v in g], fq.grad_factor
    (g_lo, g_up), f1 = grads(1)
    assert g_up > 0 and g_lo > 0  # raising either bound raises the sum of clipped values here
    (g_lo2, g_up2), f2 = grads(100)
    assert g_up2 / g_up == pytest.approx(f2 / f1, rel=1e-4)
    # a plain straight-through x + stop_gradient(q - x) would give exactly zero here
    fq_off = FakeQuant(0)
    assert not fq_off.enabled


def test_dbdc_on_known_histogram():
    hist = np.array([1, 5, 100, 400, 300, 100, 50, 3, 2, 1])
    edges = np.arange(11, dtype=float)
    # total 962, p = 0.01 -> keep >= 952.38. Drop left 1 (ties go left) -> 961, right 1 -> 960,
    # right 2 -> 958, right 3 -> 955; next the smaller edge is left 5 -> 950 < 952.38: stop.
    # Bins 1..6 remain: bounds are edges 1 and 7.
    assert dbdc_from_histogram(hist, edges, p=0.01) == (1.0, 7.0)
    assert dbdc_from_histogram(hist, edges, p=0.0) == (0.0, 10.0)
    assert dbdc_from_histogram(hist, edges, p=0.5) == (3.0, 5.0)
    values = np.concatenate([RNG.standard_normal(100_000), [40.0, -35.0]])
    lo, hi = dbdc_bounds(values, p=1e-4)
    assert -5 < lo < -3 and 3 < hi < 5  # the two outliers are clipped, asymmetric bounds


def test_omse_clips_outliers():
    values = np.concatenate([RNG.random(50_000), [20.0]])
    lo, hi = omse_bounds(values, bits=4)
    assert hi < 20 and lo >= -1e-9
    err = lambda l, h: np.mean((quantize_np(values, l, h, 4, False) - values) ** 2)
    assert err(lo, hi) < err(values.min(), values.max())


def test_bad_config_rejected():
    with pytest.raises(ValueError, match="w_bit must be between 2 and 8"):
        QuantConfig(w_bit=9, a_bit=8)
    with pytest.raises(ValueError, match="a_bit must be between 2 and 8"):
        QuantConfig(w_bit=8, a_bit=1)
    net = create_model("abpn", "M2C8", 2)
    with pytest.raises(ValueError, match="fp_scope pattern 'head.*' matches no layer; layers: conv_first, body.0"):
        quantize_model(net, QuantConfig(4, 4, fp_scope=["head.*"]))
    with pytest.raises(ValueError, match="unknown quant_method 'kmeans'"):
        collect_activation_bounds(net, [], "kmeans")
    with pytest.raises(ValueError, match=r"must be \[w_bit, a_bit\]"):
        QuantConfig(4, 4, bit_table={"body.*": 4})


def test_scopes_and_bit_table():
    net = create_model("abpn", "M2C8", 2)
    plan = quantize_model(net, QuantConfig(4, 4, fp_scope=["conv_up"], bit_table={"body.1": [6, 5]}))
    assert plan == {"conv_first": (8, 8), "body.0": (4, 4), "body.1": (6, 5), "conv_up": None, "conv_last": (8, 8)}
    assert isinstance(net.conv_up, nn.Conv2d) and not hasattr(net.conv_up, "act_quant")
    assert QuantConfig(8, 8).int8_scope == ["first_last"]


def test_calibrated_model_save_load_identical(tmp_path):
    batches = [RNG.random((2, 3, 12, 12)).astype(np.float32) for _ in range(2)]
    net = create_model("abpn", "M4C28", 3)
    calibrate(net, batches, "dbdc", QuantConfig(4, 4))
    path = str(tmp_path / "q.ckpt")
    save_checkpoint(net, path, meta={"model": "abpn", "variant": "M4C28", "scale": 3})
    params, _ = read_checkpoint(path)
    assert "body.0.act_quant.lower" in params and params["body.0.weight_quant.upper"].shape == (28, 1, 1, 1)
    other = create_model("abpn", "M4C28", 3)
    quantize_model(other, QuantConfig(4, 4))
    ms.load_param_into_net(other, {k: ms.Parameter(Tensor(v), name=k) for k, v in params.items()}, strict_load=True)
    x = Tensor(batches[0])
    np.testing.assert_array_equal(other(x).asnumpy(), net(x).asnumpy())
    fp = create_model("abpn", "M4C28", 3)
    assert np.abs(fp(x).asnumpy() - net(x).asnumpy()).max() > 1e-4  # really quantized


def test_asymmetric_range_always_contains_zero():
    """A lower bound above 0 must not shrink the grid to [0, u - l] (zero-point form)."""
    fq = FakeQuant(8, symmetric=False)
    fq.set_bounds(0.3, 1.0)
    assert fq.bounds()[0].item() == 0.0  # nudged
    fq.lower.set_data(Tensor(np.array([0.3], np.float32)))  # e.g. after an optimiser step
    x = np.linspace(0, 1, 11).astype(np.float32)
    np.testing.assert_allclose(fq(Tensor(x)).asnumpy(), x, atol=1.0 / 255)  # full [0, 1] range kept


class _Weighted(nn.Cell):
    """``sum(quantize(x, step, zero) * w)``: a loss whose gradient reaches every element differently."""
    def __init__(self, quantize):
        super().__init__()
        self.quantize = quantize

    def construct(self, x, step, zero, w):
        out = self.quantize(x, step, zero)
        return ((out[0] if isinstance(out, tuple) else out) * w).sum()


@pytest.mark.parametrize("mode", [ms.GRAPH_MODE, ms.PYNATIVE_MODE])
def test_hand_written_fake_quant_gradient_equals_autodiff(mode):
    """The per-tensor quantizer's written-out backward equals autodiff of the op-by-op form, on values
    that land exactly on the clamp's ends (ReLU zeros with zero point 0, the upper bound) and outside."""
    from mindspore import ops  # pylint: disable=import-outside-toplevel
    from src.quantlib.fake_quant import AsymmetricFakeQuantize  # pylint: disable=import-outside-toplevel
    from src.quantlib.grid import fake_quantize_asymmetric_ms  # pylint: disable=import-outside-toplevel

    class Reference(nn.Cell):
        def construct(self, x, step, zero):
            return fake_quantize_asymmetric_ms(x, step, zero, 255.0)
    rng = np.random.default_rng(7)
    x = np.maximum(rng.standard_normal((2, 3, 8, 8)), 0).astype(np.float32)
    x[0, 0, 0, :6] = [0.0, 2.0, 2.5, -0.25, 1.0 / 3, 7.0]
    w = Tensor(rng.standard_normal(x.shape).astype(np.float32))
    previous = ms.get_context("mode")
    ms.set_context(mode=mode)
    try:
        for zero in (0.0, 12.0):
            args = (Tensor(x), Tensor(np.array([2.0 / 255], np.float32)), Tensor(np.array([zero], np.float32)), w)
            results = []
            for quantize in (Reference(), AsymmetricFakeQuantize(255.0)):
                net = _Weighted(quantize)
                value = net(*args).asnumpy()
                grads = ops.GradOperation(get_all=True)(net)(*args)
                results.append((value, [g.asnumpy() for g in grads[:3]]))
            (v_ref, g_ref), (v_new, g_new) = results
            assert v_new == v_ref  # same operations: same forward value
            np.testing.assert_allclose(g_new[0], g_ref[0], rtol=1e-6, atol=1e-7)  # dx (straight-through, masked)
            assert np.count_nonzero(g_new[0]) < x.size  # the mask did bind somewhere
            np.testing.assert_allclose(g_new[1], g_ref[1], rtol=1e-4)  # dstep
            np.testing.assert_allclose(g_new[2], g_ref[2], rtol=1e-4, atol=1e-6)  # dzero
    finally:
        ms.set_context(mode=previous)
