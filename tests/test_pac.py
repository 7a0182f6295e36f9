"""Pixel-aware calibration: bounds move, the output gets closer to the float model, weights stay."""
import os

import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor

from src.quantlib.calibrate import CalibrationConfig, calibrate
from src.quantlib.quant_layers import QuantConfig, quant_layers
from src.quantlib.pac import PaCConfig, layer_inputs, pixel_aware_calibration
from src.weights.loader import load_for_inference


def _smooth(rng, n, size=24):
    """Smooth random images (bilinear-upsampled noise), n x 3 x size x size in [0, 1]."""
    import cv2  # pylint: disable=import-outside-toplevel
    small = rng.random((n, size // 6, size // 6, 3)).astype(np.float32)
    return np.ascontiguousarray(np.stack([cv2.resize(s, (size, size)) for s in small]).transpose(0, 3, 1, 2))


SHIPPED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pretrained",
                       "abpn_M4C28_x2.ckpt")


def _pair():
    """The shipped ABPN x2 twice: float reference and the copy to quantize."""
    return load_for_inference("abpn", "M4C28", 2, SHIPPED)[0], load_for_inference("abpn", "M4C28", 2, SHIPPED)[0]


def _l1(fp, q, x):
    return float(np.abs(fp(Tensor(x)).asnumpy() - q(Tensor(x)).asnumpy()).mean())


def test_pac_moves_bounds_only_and_lowers_the_error():
    rng = np.random.default_rng(0)
    calib, held_out = _smooth(rng, 16), _smooth(rng, 4)
    fp, q = _pair()
    # from DBDC's bounds as they were before the Hessian weight grid: PaC's weight phase does not
    # improve on the Hessian grid here (held-out L1 0.00372 -> 0.00418), see README
    calibrate(q, [calib[i:i + 4] for i in range(0, 16, 4)],
              CalibrationConfig("dbdc", weight_grid="minmax", input_minmax=False), QuantConfig(4, 4))
    weights = {p.name: p.asnumpy().copy() for p in q.get_parameters() if "quant" not in p.name}
    bounds = {p.name: p.asnumpy().copy() for p in q.get_parameters() if "quant" in p.name}
    before = _l1(fp, q, held_out)
    history = pixel_aware_calibration(q, fp, calib, PaCConfig(act_iters=30, weight_iters=30, batch=4,
                                                               feature_weight=0.0))
    assert set(history) == {"activation", "weight"}
    for p in q.get_parameters():
        if "quant" in p.name:
            continue
        np.testing.assert_array_equal(p.asnumpy(), weights[p.name])  # weights never change
    moved = [n for n, v in bounds.items() if np.abs(q.parameters_dict()[n].asnumpy() - v).max() > 1e-6]
    assert any("act_quant" in n for n in moved) and any("weight_quant" in n for n in moved)
    assert _l1(fp, q, held_out) < before


def test_pac_defaults_lower_the_calibration_loss():
    """Default PaC (feature weight 5, relative feature terms): the loss falls in both phases."""
    rng = np.random.default_rng(2)
    calib = _smooth(rng, 8)
    fp, q = _pair()
    calibrate(q, [calib[:4], calib[4:]], "dbdc", QuantConfig(4, 4))
    history = pixel_aware_calibration(q, fp, calib, PaCConfig(act_iters=40, weight_iters=40, batch=8))
    for losses in history.values():
        assert np.mean(losses[-5:]) < np.mean(losses[:5])


def test_feature_term_reaches_the_bounds():
    """Unlike the published code, the feature term has a gradient of its own."""
    rng = np.random.default_rng(1)
    x = Tensor(_smooth(rng, 2))
    fp, q = _pair()
    calibrate(q, [x.asnumpy()], "minmax", QuantConfig(4, 4))
    layers = [l for _, l in quant_layers(q)]
    fp_layers = [c for n, c in fp.cells_and_names() if n in {m for m, _ in quant_layers(q)}]
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        _, fp_feats = layer_inputs(fp, fp_layers[1:], x)

        def feature_only(inp):
            _, feats = layer_inputs(q, layers[1:], inp)
            return sum(ms.ops.abs(f - t).mean() for f, t in zip(feats, fp_feats))
        grad = ms.value_and_grad(feature_only, grad_position=None, weights=[layers[1].act_quant.upper])(x)[1][0]
    finally:
        ms.set_context(mode=ms.GRAPH_MODE)
    assert abs(float(grad.asnumpy().ravel()[0])) > 0



def test_pac_l2_loss_lowers_the_calibration_loss_and_bad_loss_is_rejected():
    with pytest.raises(ValueError, match=r"PaCConfig.loss 'huber': must be 'l1' or 'l2'"):
        PaCConfig(loss="huber")
    rng = np.random.default_rng(3)
    calib = _smooth(rng, 8)
    fp, q = _pair()
    calibrate(q, [calib[:4], calib[4:]], "dbdc", QuantConfig(4, 4))
    history = pixel_aware_calibration(q, fp, calib, PaCConfig(act_iters=30, weight_iters=0, batch=8, loss="l2"))
    assert np.mean(history["activation"][-5:]) < np.mean(history["activation"][:5])


@pytest.mark.parametrize("loss", ["l1", "l2"])
def test_compiled_pac_equals_the_pynative_reference(loss, monkeypatch):
    """Same seed, same draws: the compiled step (graph mode, taps in the network, float features
    cached once) and the PyNative path with forward hooks end with the same bounds, to 1e-5,
    and the same losses; the compiled path without the cache (float model run every step) too.
    Parameter names are back as they were."""
    from src.quantlib.pac_step import FeatureCache  # pylint: disable=import-outside-toplevel
    calib = _smooth(np.random.default_rng(4), 8, size=18)
    results = {}
    for path in ("pynative", "graph", "graph_uncached"):
        if path == "graph_uncached":
            monkeypatch.setattr(FeatureCache, "fits", staticmethod(lambda *a, **k: False))
        fp, q = _pair()
        # the start DBDC gave before the Hessian weight grid and the min/max input bounds became the
        # defaults: from that newer start a rounding tie flips between the two paths (l2: losses part
        # after 3 steps; l1: one weight bound 1.9e-5 off)
        calibrate(q, [calib[:4], calib[4:]], CalibrationConfig("dbdc", weight_grid="minmax", input_minmax=False),
                  QuantConfig(4, 4))
        names = [p.name for p in q.get_parameters()]
        results["start"] = {p.name: p.asnumpy().copy() for p in q.get_parameters() if "quant" in p.name}
        history = pixel_aware_calibration(q, fp, calib, PaCConfig(act_iters=6, weight_iters=6, batch=2, loss=loss,
                                                                   seed=5, graph=path != "pynative"))
        assert [p.name for p in q.get_parameters()] == names
        assert "pac_" not in str([p.name for p in fp.get_parameters()])
        results[path] = (history, {p.name: p.asnumpy() for p in q.get_parameters() if "quant" in p.name})
    ref_history, ref_bounds = results["pynative"]
    for path in ("graph", "graph_uncached"):
        history, bounds = results[path]
        for phase in ("activation", "weight"):
            np.testing.assert_allclose(history[phase], ref_history[phase], rtol=1e-4)
        for name, value in ref_bounds.items():
            np.testing.assert_allclose(bounds[name], value, rtol=1e-5, atol=1e-5, err_msg=name)
    moved = [n for n, v in ref_bounds.items() if np.abs(v - results["start"][n]).max() > 1e-4]
    assert any("act_quant" in n for n in moved) and any("weight_quant" in n for n in moved)
