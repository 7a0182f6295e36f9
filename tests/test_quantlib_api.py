"""quantlib's public API: the observer table, quantize() as the one pipeline, one grid, one hook helper."""
import math

import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn

from src.engine.schedules import cosine_lr
from src.export.onnx.qdq_plan import act_grid, observed_grid, weight_grid
from src.models.registry import create_model
from src.quantlib import OBSERVERS, CalibrationConfig, PaCConfig, QuantConfig, quantize
from src.quantlib.calibrate import calibrate
from src.quantlib.equalize import equalize
from src.quantlib.fake_quant import FakeQuant
from src.quantlib.grid import grid_np, q_max_of, quantize_np, to_integers_np
from src.quantlib.observers import Observer, dbdc_bounds, observer_class, omse_bounds
from src.quantlib.pac import cosine_rates, pixel_aware_calibration
from src.utils.hooks import forward_hooks, pynative_mode


class _ReferenceObserver:
    """The single-class observer with string switches that the table replaced (as of 4d968d7)."""

    def __init__(self, method, bits, percentile=0.9999, dbdc_p=1e-4, bins=2048):
        self.method, self.bits, self.percentile, self.dbdc_p, self.bins = method, bits, percentile, dbdc_p, bins
        self.per_batch, self.samples, self.min, self.max = [], [], np.inf, -np.inf

    def update(self, x):
        x = np.asarray(x, np.float64).ravel()
        self.min, self.max = min(self.min, float(x.min())), max(self.max, float(x.max()))
        if self.method == "percentile":
            self.per_batch.append(np.quantile(x, [1.0 - self.percentile, self.percentile]))
        elif self.method == "dbdc":
            self.per_batch.append(dbdc_bounds(x, self.dbdc_p, self.bins))
        elif self.method == "omse":
            keep = min(x.size, 20_000)
            self.samples.append(np.random.default_rng(len(self.samples)).choice(x, keep, replace=False))

    def bounds(self):
        if self.method == "minmax":
            return self.min, self.max
        if self.method == "omse":
            return omse_bounds(np.concatenate(self.samples), self.bits)
        lows, highs = np.asarray(self.per_batch).T
        return float(lows.mean()), float(highs.mean())


def _reference_weight_bounds(weight, method, bits, symmetric=True):
    w = np.asarray(weight, np.float64).reshape(weight.shape[0], -1)
    if method == "omse":
        pairs = [omse_bounds(row, bits, symmetric) for row in w]
        return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    if symmetric:
        amax = np.abs(w).max(axis=1)
        return -amax, amax
    return w.min(axis=1), w.max(axis=1)


@pytest.mark.parametrize("method", sorted(OBSERVERS))
def test_every_observer_gives_the_bounds_of_the_switch_it_replaced(method):
    rng = np.random.default_rng(7)
    batches = [np.maximum(rng.standard_normal((2, 8, 12, 12)) * 0.7 + 0.2, 0.0).astype(np.float32),
               (rng.standard_normal((2, 8, 12, 12)) * 1.3).astype(np.float32),
               np.concatenate([rng.random(4000), [25.0, -9.0]]).astype(np.float32)]
    settings = CalibrationConfig(method, percentile=0.999, dbdc_p=3e-4)
    obs = observer_class(method).from_settings(6, settings)
    ref = _ReferenceObserver(method, 6, percentile=0.999, dbdc_p=3e-4)
    for batch in batches:
        obs.collect(batch)
        ref.update(batch)
    assert isinstance(obs, Observer) and obs.bounds() == ref.bounds()
    weight = (rng.standard_normal((5, 3, 3, 3)) * np.array([0.1, 1, 3, 0.5, 2])[:, None, None, None]).astype(np.float32)
    for symmetric in (True, False):
        got, want = obs.weight_bounds(weight, 4, symmetric), _reference_weight_bounds(weight, method, 4, symmetric)
        for g, w in zip(got, want):
            assert g.shape == (5,) and np.array_equal(g, w)


def test_observer_table_contract_and_errors():
    assert set(OBSERVERS) == {"minmax", "percentile", "omse", "dbdc"}  # dbdc_pac is DBDC + PaC, not an observer
    for cls in OBSERVERS.values():
        assert issubclass(cls, Observer)
        with pytest.raises(ValueError, match="saw no data"):
            cls(8).bounds()
    with pytest.raises(ValueError, match="unknown quant_method 'dbdc_pac'"):
        CalibrationConfig("dbdc_pac")


def _twins(scale=2):
    """Three identical copies of a small ABPN with seeded weights and spread channel scales."""
    rng = np.random.default_rng(11)
    nets = [create_model("abpn", "M2C8", scale) for _ in range(3)]
    for name, p in nets[0].parameters_and_names():
        value = rng.standard_normal(p.shape) * 0.15
        if value.ndim == 4:
            value = value * np.exp(rng.uniform(-1, 1, (value.shape[0], 1, 1, 1)))
        for net in nets:
            dict(net.parameters_and_names())[name].set_data(Tensor(value.astype(np.float32)))
    return nets


def test_quantize_equals_equalize_calibrate_then_pac_step_by_step():
    patches = np.random.default_rng(5).random((6, 3, 12, 12)).astype(np.float32)
    qcfg = QuantConfig(4, 4)
    calib = CalibrationConfig("dbdc", dbdc_p=2e-4, batch=2, equalize=True)
    pac = PaCConfig(act_iters=4, weight_iters=4, batch=2, seed=3)
    fp_a, q_a, _ = _twins()
    equalize(fp_a, [patches[i:i + 2] for i in range(0, 6, 2)], others=(q_a,))
    calibrate(q_a, [patches[i:i + 2] for i in range(0, 6, 2)], calib, qcfg)
    pixel_aware_calibration(q_a, fp_a, patches, pac)
    fp_b, q_b, _ = _twins()
    lines = []
    assert quantize(fp_b, qcfg, patches, calib, pac, qnet=q_b, log=lines.append) is q_b
    assert lines[0] == "equalised the activation ranges of 4 conv pairs" and any("PaC weight" in l for l in lines)
    fp_c = _twins()[0]
    q_c = quantize(fp_c, qcfg, patches, calib, pac)  # no qnet: a deep copy of fp_c is quantized
    for (name, a), (_, b), (_, c) in zip(q_a.parameters_and_names(), q_b.parameters_and_names(),
                                        q_c.parameters_and_names()):
        assert np.array_equal(a.asnumpy(), b.asnumpy()) and np.array_equal(a.asnumpy(), c.asnumpy()), name
    for a, b in zip(fp_a.get_parameters(), fp_c.get_parameters()):
        assert np.array_equal(a.asnumpy(), b.asnumpy())  # the reference is equalised alike
    assert "act_quant" not in str([n for n, _ in fp_c.parameters_and_names()])  # and stays float


def _off_ties(x, step):
    """Values whose ``x / step`` is not within 1e-3 of a rounding tie (there float32 and float64, or
    a step one ulp apart, may round to neighbouring integers)."""
    frac = np.abs(np.asarray(x, np.float64) / float(np.ravel(step)[0]) % 1.0 - 0.5)
    return x[frac > 1e-3]


@pytest.mark.parametrize("bits", [2, 4, 6, 8])
def test_fake_quant_numpy_reference_and_exporter_share_one_grid(bits):
    rng = np.random.default_rng(bits)
    x = np.concatenate([np.linspace(-3, 3, 1201), rng.standard_normal(800) * 2]).astype(np.float32)
    for lower, upper in ((-0.37, 1.21), (0.2, 2.5), (-1.7, -0.1), (-0.8, 0.8)):
        act = FakeQuant(bits, symmetric=False)
        act.set_bounds(lower, upper)
        step, zero = act.grid()
        x = _off_ties(x, step)
        q_max = q_max_of(bits, False)
        fq_out = act(Tensor(x)).asnumpy()
        lo, up = act.bounds()
        np_out = quantize_np(x, lo, up, bits, False)
        grid = act_grid(act)  # the exporter's Q/DQ grid of this quantizer
        ints = to_integers_np(x, grid.scale, int(grid.zero_point), 0, q_max)
        assert float(grid.scale) == float(step[0]) and int(grid.zero_point) == int(zero[0])
        export_out = (ints - int(grid.zero_point)) * grid.scale
        np.testing.assert_allclose(fq_out, np_out, atol=1e-6 * max(1.0, up[0] - lo[0]))
        np.testing.assert_allclose(fq_out, export_out, atol=1e-6 * max(1.0, up[0] - lo[0]))
        assert np.array_equal(np.floor(fq_out / step + 0.5) + zero, ints)
        np_step, np_zero = grid_np(lo, up, q_max, False)  # float32 bounds: the checkpoint's grid, to the bit
        assert np.array_equal(np_step, step) and np.array_equal(np_zero, zero)
        weight_q = FakeQuant(bits, symmetric=True, channels=1, elements_per_bound=x.size)
        weight_q.set_bounds(lower, upper)
        w = _off_ties(x, weight_q.grid()[0]).reshape(1, 1, 1, -1)
        w_int, w_step = weight_grid(weight_q, w)
        np.testing.assert_allclose(weight_q(Tensor(w)).asnumpy(), w_int * w_step.reshape(1, 1, 1, 1),
                                   atol=1e-6 * max(1.0, abs(upper), abs(lower)))
        np.testing.assert_allclose(w_int * w_step.reshape(1, 1, 1, 1), quantize_np(w, *weight_q.bounds(), bits, True),
                                   atol=1e-6 * max(1.0, abs(upper), abs(lower)))
    observed = observed_grid((-0.3, 2.2))
    step, zero = grid_np(-0.3, 2.2, 255, False)
    assert observed.scale == np.float32(step) and int(observed.zero_point) == int(zero)


def test_forward_hooks_restore_the_mode_and_remove_the_hooks_on_error():
    net = nn.SequentialCell([nn.Conv2d(1, 2, 3, has_bias=True), nn.ReLU(), nn.Conv2d(2, 1, 3, has_bias=True)])
    seen = []
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        with pytest.raises(RuntimeError, match="stop"):
            with forward_hooks([(net[0], lambda _c, inputs: seen.append(inputs[0].shape))], pre=True):
                assert ms.get_context("mode") == ms.PYNATIVE_MODE
                with pynative_mode():  # nests without switching back early
                    net(Tensor(np.zeros((1, 1, 6, 6), np.float32)))
                assert ms.get_context("mode") == ms.PYNATIVE_MODE
                raise RuntimeError("stop")
        assert ms.get_context("mode") == ms.GRAPH_MODE and seen == [(1, 1, 6, 6)]
        with pynative_mode():
            net(Tensor(np.zeros((1, 1, 6, 6), np.float32)))
        assert seen == [(1, 1, 6, 6)]  # the hook is gone
    finally:
        ms.set_context(mode=previous)


def test_one_cosine_for_the_training_schedule_and_pac():
    assert cosine_lr(1e-3, 1e-5, 10, warmup_steps=2)[2:] == [  # the schedule's own formula, to the bit
        1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi * ((s - 2) / max(1, 8)))) for s in range(2, 10)]
    old = [2e-3 + 0.5 * (5e-3 - 2e-3) * (1 + math.cos(math.pi * i / 249)) for i in range(250)]
    assert np.array_equal(np.float32(cosine_rates(5e-3, 2e-3, 250)), np.float32(old))  # what Adam receives
    assert cosine_rates(5e-3, 2e-3, 1) == [5e-3] and cosine_rates(1e-2, 1e-3, 2) == pytest.approx([1e-2, 1e-3], rel=1e-12)
