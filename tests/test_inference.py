import numpy as np
import pytest

from src.engine.inference import SRPredictor, auto_tile_size, _ensemble_forward, _ensemble_inverse
from src.data.transforms import tensor_to_uint8
from src.models import create_model


@pytest.mark.parametrize("model,variant,scale", [("abpn", "M4C28", 3), ("ecbsr", "M4C8", 2),
                                                 ("edsr", "baseline", 4)])
def test_tiled_equals_untiled(model, variant, scale):
    net = create_model(model, variant, scale)
    x = np.random.default_rng(0).random((1, 3, 45, 38)).astype(np.float32)
    whole = SRPredictor(net, scale, tile_size=-1).forward(x)
    tiled = SRPredictor(net, scale, tile_size=16).forward(x)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    # too little overlap must differ: the check above is not vacuous
    starved = SRPredictor(net, scale, tile_size=16, tile_overlap=0).forward(x)
    assert np.abs(starved - whole).max() > 1e-4


def test_ensemble_transforms_invert():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    for k in range(8):
        np.testing.assert_array_equal(_ensemble_inverse(_ensemble_forward(x, k), k), x)


def test_self_ensemble_is_mean_of_transformed_runs():
    net = create_model("abpn", "M2C8", 2)
    lr = np.random.default_rng(0).integers(0, 256, (10, 12, 3)).astype(np.uint8)
    plain = SRPredictor(net, 2, tile_size=-1)
    x = lr.transpose(2, 0, 1)[None].astype(np.float32) / 255
    manual = np.mean([_ensemble_inverse(plain.forward(_ensemble_forward(x, k)), k) for k in range(8)], axis=0)
    ens = SRPredictor(net, 2, tile_size=-1, self_ensemble=True).predict_float(lr)
    np.testing.assert_allclose(ens, manual, atol=1e-6)
    assert np.abs(ens - plain.predict_float(lr)).max() > 1e-4


def test_auto_tile_size_shrinks_for_big_models():
    small = auto_tile_size(create_model("abpn", "M4C28", 2), 2, 7, 6.0)
    big = auto_tile_size(create_model("edsr", "full", 2), 2, 68, 6.0)
    assert small > 1000 and 64 <= big < 700 and big % 8 == 0
    # EDSR-full x2 holds 256 * 2^2 channels per LR pixel in its upsampler
    assert create_model("edsr", "full", 2).peak_channels == 1024


@pytest.mark.parametrize("model,variant,scale", [("abpn", "M2C8", 3), ("sesr", "M3", 2)])
def test_predict_writes_tiles_into_the_uint8_output_exactly(model, variant, scale):
    """predict() fills the uint8 output tile by tile (memory: the output and one tile); the pixels equal the
    whole image's, also the Y model's bicubic Cb/Cr (regions of a tile with their context)."""
    net = create_model(model, variant, scale)
    lr = (np.random.default_rng(3).random((45, 61, 3)) * 255).astype(np.uint8)
    whole = tensor_to_uint8(SRPredictor(net, scale, -1).predict_float(lr))
    tiled = SRPredictor(net, scale, 24).predict(lr)
    assert tiled.shape == whole.shape == (45 * scale, 61 * scale, 3)
    assert int(np.abs(tiled.astype(int) - whole.astype(int)).max()) <= 1
    assert (tiled != whole).mean() < 1e-3  # only float sums in another order, at rounding ties
