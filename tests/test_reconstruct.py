"""Learned rounding with block reconstruction (``--quant_method dbdc_recon``): the rounding stays within
one grid step of round-to-nearest and is exact integers after hardening, the refined model reloads
and exports unchanged, and the reconstruction brings the quantized model closer to the float one."""
import copy
import os

import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn

from conftest import ROOT
from src.errors import SettingError
from src.quantlib import QuantConfig, ReconConfig, quantize, reconstruct
from src.quantlib.calibrate import CalibrationConfig
from src.quantlib.fake_quant import FakeQuant
from src.quantlib.pac_step import FeatureMatch
from src.quantlib.quant_layers import quant_layers
from src.quantlib.reconstruct import AdaRoundWeight, DroppedQuant, blocks_of
from src.utils.hooks import graph_mode, pynative_mode
from src.weights.loader import load_for_inference

SHIPPED = os.path.join(ROOT, "pretrained", "abpn_M4C28_x2.ckpt")


def _smooth(rng, n, size=24):
    """Smooth random images (bilinear-upsampled noise), n x 3 x size x size in [0, 1]."""
    import cv2  # pylint: disable=import-outside-toplevel
    small = rng.random((n, size // 6, size // 6, 3)).astype(np.float32)
    return np.ascontiguousarray(np.stack([cv2.resize(s, (size, size)) for s in small]).transpose(0, 3, 1, 2))


def _float():
    return load_for_inference("abpn", "M4C28", 2, SHIPPED)[0]


def _mse(a, b, x):
    return float(np.square(a(Tensor(x)).asnumpy() - b(Tensor(x)).asnumpy()).mean())


@pytest.fixture(scope="module")
def refined():
    """The shipped ABPN x2 at W4A4: DBDC, then DBDC + reconstruction (rounding moved quickly)."""
    rng = np.random.default_rng(0)
    patches = _smooth(rng, 8)
    fp = _float()
    calib = CalibrationConfig("dbdc")
    base = quantize(fp, QuantConfig(4, 4), patches, calib)
    cfg = ReconConfig(iters=40, batch=2, round_lr=0.2, round_weight=1e-3, warmup=0.1, drop=0.5)
    q = copy.deepcopy(base)
    history = reconstruct(q, fp, patches, cfg)
    return fp, base, q, history, patches


def test_blocks_cover_every_layer_once():
    names = list("abcdefg")
    assert blocks_of(names, 1) == [(i, i + 1) for i in range(7)]
    assert blocks_of(names, 3) == [(0, 3), (3, 6), (6, 7)]
    assert blocks_of(names, 0) == [(0, 7)]
    assert blocks_of([], 0) == [] and blocks_of([], 1) == []


def test_schedule_warms_up_then_anneals_beta():
    cfg = ReconConfig(iters=100, warmup=0.2, round_weight=0.01)
    betas = [cfg.schedule(i) for i in range(100)]
    assert all(w == 0.0 for _, w in betas[:20]) and all(w == 0.01 for _, w in betas[20:])
    values = [b for b, _ in betas[20:]]
    assert values[0] == 20.0 and all(x >= y for x, y in zip(values, values[1:])) and values[-1] > 2.0
    assert cfg.schedule(100)[0] == pytest.approx(2.0)


@pytest.mark.parametrize("bad,field,requirement", [({"drop": 1.0}, "drop", "in [0, 1)"), ({"iters": 0}, "iters", ">= 1"),
                                                   ({"beta_start": 1.0}, "beta_end", "in (0, beta_start 1.0]"),
                                                   ({"warmup": 1.0}, "warmup", "in [0, 1)")])
def test_bad_settings_are_refused_in_the_librarys_terms(bad, field, requirement):
    with pytest.raises(SettingError) as caught:
        ReconConfig(**bad)
    assert (caught.value.owner, caught.value.field, caught.value.requirement) == ("ReconConfig", field, requirement)
    assert str(caught.value).startswith(f"ReconConfig.{field} ") and "recon_" not in str(caught.value)


def test_soft_rounding_starts_at_the_float_weight():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    quantizer = FakeQuant(4, symmetric=True, channels=4)
    quantizer.set_bounds(-np.full(4, 2.5), np.full(4, 2.5))  # some weights beyond 2.5 are clipped
    rounder = AdaRoundWeight(w, quantizer, "t")
    soft = rounder(Tensor(w)).asnumpy()
    step = 2.5 / 7
    inside = np.abs(w) < 2.5 - step
    np.testing.assert_allclose(soft[inside], w[inside], atol=2e-4 * step)
    assert np.abs(soft).max() <= 2.5 + 1e-6


def test_dropped_quant_passes_a_random_fraction_unquantized():
    quantizer = FakeQuant(4)
    quantizer.set_bounds(0.0, 1.0)
    x = Tensor(np.random.default_rng(2).random((4, 8, 16, 16)).astype(np.float32))
    xq = quantizer(x).asnumpy()
    out = DroppedQuant(quantizer, 0.5, 0)(x).asnumpy()
    kept_float = np.isclose(out, x.asnumpy()) & ~np.isclose(xq, x.asnumpy())
    assert 0.4 < kept_float.mean() / (~np.isclose(xq, x.asnumpy())).mean() < 0.6
    assert np.all(np.isclose(out, x.asnumpy()) | np.isclose(out, xq))


class _Later(nn.Cell):
    """A block-end tap followed by a 'later layer' (x 100), summed."""

    def __init__(self, through):
        super().__init__()
        self.match = FeatureMatch("l2", through)
        self.target = Tensor(np.zeros((1, 2, 2, 2), np.float32))
        self.coef = Tensor(np.float32(1.0))

    def construct(self, x):
        return (self.match(x, self.target, self.coef) * 100.0).sum()


def test_block_end_tap_drops_the_gradient_of_later_layers():
    x = Tensor(np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2))
    for mode in (pynative_mode, graph_mode):  # reconstruction runs it compiled
        with mode():
            cut = ms.grad(_Later(False))(x).asnumpy()
            kept = ms.grad(_Later(True))(x).asnumpy()
        np.testing.assert_allclose(cut, 2.0 * x.asnumpy() / 8, rtol=1e-6)  # d/dx mean((x - 0)^2) only
        np.testing.assert_allclose(kept, cut + 100.0, rtol=1e-6)


def test_learned_rounding_is_one_step_from_nearest_and_exact_integers(refined):
    _, base, q, _, _ = refined
    for (name, layer), (_, before) in zip(quant_layers(q), quant_layers(base)):
        step, zero = layer.weight_quant.grid()
        assert np.abs(layer.weight_quant.grid()[0] - before.weight_quant.grid()[0]).max() == 0  # grid kept
        learned = layer.weight.asnumpy() / step + zero
        np.testing.assert_allclose(learned, np.round(learned), atol=1e-4, err_msg=name)  # on the grid
        q_max = layer.weight_quant.q_max
        nearest = np.clip(np.floor(before.weight.asnumpy() / step + 0.5), -q_max, q_max)
        assert np.abs(np.round(learned) - nearest).max() <= 1, name
        moved = int((np.round(learned) != nearest).sum())
        assert moved > 0, name  # every block learned (not only the last, which sees the output)
        # the model's own round-to-nearest keeps the learned integers (values equal to float rounding)
        again = layer.weight_quant(layer.weight).asnumpy()
        np.testing.assert_array_equal(np.round(again / step + zero), np.round(learned))
        np.testing.assert_allclose(again, layer.weight.asnumpy(), rtol=0, atol=1e-6 * float(step.max()))


def test_reconstruction_keeps_names_and_brings_the_output_closer(refined):
    fp, base, q, history, patches = refined
    assert [p.name for p in q.get_parameters()] == [p.name for p in base.get_parameters()]
    assert len(history) == len(blocks_of(quant_layers(q), ReconConfig().block))  # 7 layers, blocks of 2
    assert all(np.isfinite(np.asarray(losses)).all() for losses in history.values())
    assert _mse(fp, q, patches) < _mse(fp, base, patches)


def test_refined_checkpoint_reloads_with_identical_outputs(refined, tmp_path):
    from src.weights.checkpoint import model_meta, save_checkpoint  # pylint: disable=import-outside-toplevel
    from src.weights.loader import load_float_and_quantized  # pylint: disable=import-outside-toplevel
    _, _, q, _, patches = refined
    path = str(tmp_path / "refined.ckpt")
    save_checkpoint(q, path, meta=dict(model_meta(q), quant_config=QuantConfig(4, 4).to_json(),
                                       quant_method="dbdc_recon"))
    _, again, _ = load_float_and_quantized("abpn", "M4C28", 2, path)
    x = Tensor(patches[:2])
    np.testing.assert_array_equal(again(x).asnumpy(), q(x).asnumpy())


def test_int8_export_of_a_refined_w8a8_model_matches_its_fake_quant_model(tmp_path):
    from src.export.onnx.onnx_float import float_onnx, max_diff, save_onnx  # pylint: disable=import-outside-toplevel
    from src.runtime.sessions import ort_session  # pylint: disable=import-outside-toplevel
    from src.export.onnx.onnx_qdq import observe_output_ranges, quantize_onnx  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(3)
    patches = _smooth(rng, 6, 32)
    fp = _float()
    q = quantize(fp, QuantConfig(8, 8), patches, CalibrationConfig("dbdc"),
                 recon=ReconConfig(iters=20, batch=2, round_lr=0.2, warmup=0.1))
    nearest = quantize(fp, QuantConfig(8, 8), patches, CalibrationConfig("dbdc"))
    assert any(np.abs(a.weight.asnumpy() - b.weight_quant(b.weight).asnumpy()).max() > 0
               for (_, a), (_, b) in zip(quant_layers(q), quant_layers(nearest)))  # the rounding was learned
    xs = [patches[:1], patches[1:2, :, :20, :28]]
    path = save_onnx(quantize_onnx(float_onnx(fp, xs[0]), q, observe_output_ranges(q, xs)), str(tmp_path / "q.onnx"))
    assert max_diff(ort_session(path), q, xs) < 0.02  # integer requantisation rounding only, as for DBDC


class _Branches(nn.Cell):
    """out = conv_c(relu(conv_a(x)) + conv_b(x)): conv_b, next after conv_a in registration order, does
    not read conv_a's output."""

    def __init__(self):
        super().__init__()
        self.conv_a = nn.Conv2d(3, 8, 3, has_bias=True)
        self.conv_b = nn.Conv2d(3, 8, 3, has_bias=True)
        self.conv_c = nn.Conv2d(8, 3, 3, has_bias=True)
        self.relu = nn.ReLU()

    def construct(self, x):
        return self.conv_c(self.relu(self.conv_a(x)) + self.conv_b(x))


def test_a_block_the_next_layer_does_not_read_is_fitted_to_the_output():
    ms.set_seed(0)
    patches = _smooth(np.random.default_rng(4), 6)
    fp = _Branches()
    base = quantize(fp, QuantConfig(4, 4, int8_scope=[]), patches, CalibrationConfig("minmax", weight_grid="minmax"))
    q, lines = copy.deepcopy(base), []
    reconstruct(q, fp, patches, ReconConfig(iters=20, batch=2, round_lr=0.2, warmup=0.1, block=1),
                log=lines.append)
    assert any("conv_b does not read it; fitted to the network output" in line for line in lines)
    moved = np.abs(q.conv_a.weight.asnumpy() - base.conv_a.weight_quant(base.conv_a.weight).asnumpy()).max()
    assert moved > 0  # with conv_b's input as its target, conv_a's loss had no gradient and nothing moved


def test_an_error_inside_a_block_leaves_the_model_as_it_was(monkeypatch):
    import importlib  # pylint: disable=import-outside-toplevel
    module = importlib.import_module("src.quantlib.reconstruct")
    patches = _smooth(np.random.default_rng(5), 4)
    fp = _float()
    q = quantize(fp, QuantConfig(4, 4), patches, CalibrationConfig("dbdc"))
    before = {p.name: p.asnumpy().copy() for p in q.get_parameters()}

    def broken(*_args, **_kw):
        raise RuntimeError("interrupted")
    monkeypatch.setattr(module, "ReconStep", broken)
    with pytest.raises(RuntimeError, match="interrupted"):
        reconstruct(q, fp, patches, ReconConfig(iters=3, batch=2))
    after = {p.name: p.asnumpy() for p in q.get_parameters()}
    assert list(after) == list(before)
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)
    assert all(type(layer.weight_quant).__name__ == "FakeQuant" and type(layer.act_quant).__name__ == "FakeQuant"
               for _, layer in quant_layers(q))


def test_eval_cli_dbdc_recon_saves_a_checkpoint_that_reloads(tmp_path):
    import json  # pylint: disable=import-outside-toplevel
    from conftest import write_quant_run  # pylint: disable=import-outside-toplevel
    from src.models import create_model  # pylint: disable=import-outside-toplevel
    from test_quant_cli import _args, run_eval  # pylint: disable=import-outside-toplevel
    ckpt = write_quant_run(tmp_path, create_model("abpn", "M2C8", 2))
    qckpt = str(tmp_path / "r.ckpt")
    proc = run_eval(*_args(tmp_path, ckpt, "--quant_method", "dbdc_recon", "--w_bit", "4", "--a_bit", "4",
                           "--pac_act_iters", "2", "--recon_iters", "3", "--recon_batch", "2",
                           "--save_quant_ckpt", qckpt, "--result_file", str(tmp_path / "a.json")))
    assert proc.returncode == 0, proc.stderr
    assert "reconstruction block" in proc.stdout and "W4A4 dbdc_recon" in proc.stdout
    again = run_eval(*_args(tmp_path, qckpt, "--result_file", str(tmp_path / "b.json")))
    assert again.returncode == 0, again.stderr
    first, second = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    assert second["quant"]["method"] == "dbdc_recon" and second["quant"]["from_checkpoint"]
    assert second["results"]["Q"]["psnr"] == pytest.approx(first["results"]["Q"]["psnr"], abs=1e-9)
    bad = run_eval(*_args(tmp_path, ckpt, "--quant_method", "dbdc_recon", "--recon_drop", "1.5"))
    assert bad.returncode == 2 and "recon_drop" in bad.stderr


class _Scale(nn.Cell):
    def __init__(self, factor):
        super().__init__()
        self.factor = float(factor)

    def construct(self, x):
        return x * self.factor


def test_a_fresh_wrapper_compiles_the_model_as_it_is_now():
    """MindSpore keeps one graph per Cell object: a model called in graph mode after one of its cells was
    replaced may run its old graph. Reconstruction calls the float model through a new ``_Fresh`` per
    block (without it the second block's float targets came back as zeros). Measured: ``net(x)`` called
    directly here returns 3 both times."""
    from src.quantlib.quant_layers import replace_cell  # pylint: disable=import-outside-toplevel
    from src.quantlib.reconstruct import _Fresh  # pylint: disable=import-outside-toplevel
    net = nn.SequentialCell([_Scale(1.0), _Scale(3.0)])
    x = Tensor(np.ones((1, 2), np.float32))
    with graph_mode():
        first = _Fresh(net)(x).asnumpy()
        replace_cell(net, "1", _Scale(5.0))
        second = _Fresh(net)(x).asnumpy()
    np.testing.assert_array_equal(first, 3.0 * np.ones((1, 2)))
    np.testing.assert_array_equal(second, 5.0 * np.ones((1, 2)))
