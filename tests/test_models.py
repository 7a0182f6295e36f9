import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor

from src.models import create_model, list_models, list_variants
from src.models.common import crd_to_dcr
from torch_format import pixel_shuffle_crd

SMALL = [("abpn", "M4C28"), ("abpn", "M2C8"), ("etds", "M4C32"), ("etds", "T"), ("ecbsr", "M4C16"),
         ("ecbsr", "M4C8"), ("edsr", "baseline")]


@pytest.mark.parametrize("model,variant", SMALL)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_output_shape_and_range(model, variant, scale):
    net = create_model(model, variant, scale)
    x = np.random.default_rng(0).random((1, 3, 7, 9)).astype(np.float32)
    y = net(ms.Tensor(x)).asnumpy()
    assert y.shape == (1, 3, 7 * scale, 9 * scale)
    assert np.isfinite(y).all()
    if model == "abpn":
        assert y.min() >= 0 and y.max() <= 1


def test_published_parameter_counts():
    count = lambda net: sum(p.size for p in net.get_parameters())
    assert round(count(create_model("edsr", "baseline", 2)) / 1e6, 2) == 1.37
    assert round(count(create_model("edsr", "full", 2)) / 1e6, 1) == 40.7
    assert count(create_model("abpn", "M4C28", 3)) == 42539


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown model 'srcnn'"):
        create_model("srcnn", None, 2)
    with pytest.raises(ValueError, match="scale 5 is not supported"):
        create_model("abpn", "M4C28", 5)
    with pytest.raises(ValueError, match="M<blocks>C<channels>"):
        create_model("abpn", "big", 2)
    with pytest.raises(ValueError, match="unknown variant 'huge'"):
        create_model("edsr", "huge", 2)
    assert set(list_models()) == {"abpn", "abpn_et", "edsr", "etds", "ecbsr", "ecbsr_et", "sesr"}
    assert "M4C32" in list_variants("etds")


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_crd_to_dcr_permutation_matches_pixel_shuffles(scale):
    rng = np.random.default_rng(scale)
    x = rng.random((3 * scale * scale, 4, 5)).astype(np.float32)
    dcr = x[crd_to_dcr(x.shape[0], scale)]
    ms_out = ms.ops.DepthToSpace(scale)(ms.Tensor(dcr[None])).asnumpy()[0]
    np.testing.assert_array_equal(ms_out, pixel_shuffle_crd(x, scale))


def test_anchor_adds_input_to_every_subpixel():
    net = create_model("ecbsr", "M4C8", 3)
    for p in net.get_parameters():
        p.set_data(ms.Tensor(np.zeros(p.shape, np.float32)))
    x = np.random.default_rng(0).random((1, 3, 5, 4)).astype(np.float32)
    y = net(ms.Tensor(x)).asnumpy()
    np.testing.assert_allclose(y, np.repeat(np.repeat(x, 3, axis=2), 3, axis=3), atol=1e-7)


@pytest.mark.parametrize("scale,channels", [(2, 4), (3, 27), (4, 48)])
def test_pixel_shuffle_training_path_equals_depth_to_space(scale, channels):
    from src.models.common import PixelShuffle
    x = Tensor(np.random.default_rng(scale).random((2, channels, 5, 7)).astype(np.float32))
    shuffle = PixelShuffle(scale)
    shuffle.set_train(False)
    kernel = shuffle(x).asnumpy()
    shuffle.set_train(True)
    np.testing.assert_array_equal(shuffle(x).asnumpy(), kernel)
    assert kernel.shape == (2, channels // scale ** 2, 5 * scale, 7 * scale)


def test_mc_variants_are_bounded_before_building():
    """An 'M<m>C<c>' variant beyond the registry's bounds is refused before any weight is allocated."""
    for variant in ("M4C100000", "M1000C8", "M0C8"):
        with pytest.raises(ValueError, match=f"--variant {variant} is not a abpn variant"):
            create_model("abpn", variant, 3)
    assert create_model("abpn", "M2C8", 3).variant == "M2C8"
