import numpy as np
import pytest
from skimage.metrics import structural_similarity

from src.data.transforms import rgb_to_y
from src.metrics import calculate_psnr, calculate_ssim


def test_y_channel_range():
    assert rgb_to_y(np.full((1, 1, 3), 255.0))[0, 0] == pytest.approx(235.0)
    assert rgb_to_y(np.zeros((1, 1, 3)))[0, 0] == pytest.approx(16.0)


def test_psnr_known_value_and_shave():
    a = np.zeros((20, 20, 3), np.uint8)
    b = a.copy()
    b[2:-2, 2:-2] = 10  # inner 16x16 differs by 10 in every channel
    assert calculate_psnr(a, b, shave=2, channel="rgb") == pytest.approx(10 * np.log10(255 ** 2 / 100))
    assert calculate_psnr(a, b, shave=0, channel="rgb") == pytest.approx(
        10 * np.log10(255 ** 2 / (100 * 256 / 400)))
    assert calculate_psnr(a, a, shave=2) == float("inf")


def test_ssim_matches_skimage_gaussian_definition():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (40, 50, 3)).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    ours = calculate_ssim(a, b, shave=3, channel="y")
    ya, yb = rgb_to_y(a[3:-3, 3:-3]), rgb_to_y(b[3:-3, 3:-3])
    ref = structural_similarity(ya, yb, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                data_range=255)
    assert ours == pytest.approx(ref, abs=1e-6)
    assert calculate_ssim(a, a, shave=3) == pytest.approx(1.0)


def test_metric_errors():
    a = np.zeros((20, 20, 3), np.uint8)
    with pytest.raises(ValueError, match="shapes differ"):
        calculate_psnr(a, a[:10])
    with pytest.raises(ValueError, match="'y' or 'rgb'"):
        calculate_psnr(a, a, channel="lab")
