"""Training forms vs deploy forms: identical outputs on random weights, graph mode."""
import os

import numpy as np
import pytest
import mindspore as ms

from conftest import requires_shared, shared_dir
from src.data.image_io import read_rgb
from src.engine.inference import SRPredictor
from src.models.et import abpn_to_et, ecbsr_to_et
from src.models.registry import create_model, to_deploy
from src.weights.checkpoint import model_meta, save_checkpoint
from src.weights.torch_import import convert_torch_state_dict
from src.weights.loader import load_for_inference
from src.weights.torch_pickle import load_torch_state_dict
from src.weights.transfer import transfer_weights

RNG = np.random.default_rng(0)


def randomise(net, std=0.1, only=None):
    for p in net.get_parameters():
        if only is None or only(p.name):
            p.set_data(ms.Tensor((RNG.standard_normal(p.shape) * std).astype(np.float32)))


def run(net, x):
    net.set_train(False)
    return net(ms.Tensor(x)).asnumpy()


def assert_same_not_saturated(a, b, atol=1e-5):
    np.testing.assert_allclose(a, b, atol=atol)
    inside = np.mean((a > 1e-3) & (a < 1 - 1e-3))
    assert inside > 0.2, f"only {inside:.0%} of outputs inside (0, 1): comparison too easy"


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("n_colors,act", [(1, "prelu"), (3, "relu")])
def test_sesr_expanded_collapsed_deploy_agree(scale, n_colors, act):
    x = RNG.random((1, n_colors, 13, 11)).astype(np.float32)
    expanded = create_model("sesr", "M3", scale, form="train", linear_block_type="expanded", n_colors=n_colors,
                            act=act, feature_size=32)
    randomise(expanded, 0.05)
    collapsed = create_model("sesr", "M3", scale, form="train", linear_block_type="collapsed", n_colors=n_colors,
                             act=act, feature_size=32)
    ms.load_param_into_net(collapsed, {p.name: ms.Parameter(p.data.copy(), name=p.name)
                                       for p in expanded.get_parameters()})
    out_e, out_c = run(expanded, x), run(collapsed, x)
    deploy = to_deploy(collapsed)
    assert type(deploy).__name__ == "SESRDeploy"
    assert_same_not_saturated(out_e, out_c)
    assert_same_not_saturated(out_e, run(deploy, x))
    assert out_e.shape == (1, n_colors, 13 * scale, 11 * scale)


def test_sesr_collapsed_training_updates_expanded_weights_with_same_gradients():
    x = ms.Tensor(RNG.random((2, 1, 12, 12)).astype(np.float32))
    target = ms.Tensor(RNG.random((2, 1, 24, 24)).astype(np.float32))
    nets = {}
    for kind in ("expanded", "collapsed"):
        nets[kind] = create_model("sesr", "M3", 2, form="train", linear_block_type=kind, feature_size=16)
    randomise(nets["expanded"], 0.05)
    ms.load_param_into_net(nets["collapsed"], {p.name: ms.Parameter(p.data.copy(), name=p.name)
                                               for p in nets["expanded"].get_parameters()})
    grads = {}
    for kind, net in nets.items():
        loss_cell = ms.nn.WithLossCell(net, ms.nn.L1Loss())
        loss_cell.set_train(True)
        grads[kind] = ms.grad(loss_cell, grad_position=None, weights=net.trainable_params())(x, target)
    names = [p.name for p in nets["expanded"].trainable_params()]
    assert any(n.startswith("blocks.0.expand.") for n in names)
    for name, g_e, g_c in zip(names, grads["expanded"], grads["collapsed"]):
        np.testing.assert_allclose(g_c.asnumpy(), g_e.asnumpy(), atol=1e-5, rtol=1e-3, err_msg=name)
    assert np.abs(grads["collapsed"][names.index("blocks.0.expand.weight")].asnumpy()).max() > 0


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_etds_training_form_equals_plain(scale):
    net = create_model("etds", "M4C32", scale, form="train")
    randomise(net, 0.1)
    x = RNG.random((1, 3, 10, 9)).astype(np.float32)
    plain = to_deploy(net)
    assert type(plain).__name__ == "ETDSPlain"
    assert plain.conv_last.out_channels == (28 if scale == 3 else 3 * scale * scale)
    assert_same_not_saturated(run(net, x), run(plain, x))


def test_etds_initial_residual_stream_is_nearest_upsampling():
    net = create_model("etds", "M5C16", 3, form="train")
    randomise(net, 0.0, only=lambda n: n.startswith("conv_last."))  # silence the main stream
    x = RNG.random((1, 3, 6, 7)).astype(np.float32)
    nearest = np.repeat(np.repeat(x, 3, axis=2), 3, axis=3)
    np.testing.assert_allclose(run(net, x), nearest, atol=1e-6)
    names = {p.name.split(".")[0] for p in net.residual_parameters()}
    assert names == {"conv_residual_first", "residual_convs", "add_residual_convs", "conv_residual_last"}


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_ecbsr_reparameterisation_and_et(scale):
    net = create_model("ecbsr", "M4C8", scale, form="train")
    randomise(net, 0.1)
    x = RNG.random((1, 3, 9, 10)).astype(np.float32)
    plain = to_deploy(net)
    out = run(net, x)
    np.testing.assert_allclose(run(plain, x), out, atol=1e-5)
    assert_same_not_saturated(np.clip(out, 0, 1), run(ecbsr_to_et(plain), x))


def test_ecb_bias_padding_matters_at_borders():
    """Zero-padding the 1x1 output (instead of bias padding) would break exactness at the border."""
    net = create_model("ecbsr", "M4C8", 2, form="train")
    randomise(net, 0.3)
    x = RNG.random((1, 3, 8, 8)).astype(np.float32)
    ref = run(net, x)
    np.testing.assert_allclose(run(to_deploy(net), x), ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())
    seq = net.backbone[0].conv1x1_3x3
    assert np.abs(seq.conv0.bias.asnumpy()).max() > 0.05  # a non-trivial bias was padded


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_abpn_equivalent_transformation(scale):
    net = create_model("abpn", "M4C28", scale)
    randomise(net, 0.1)
    x = RNG.random((1, 3, 9, 8)).astype(np.float32)
    et = abpn_to_et(net)
    assert_same_not_saturated(run(net, x), run(et, x))


@requires_shared
def test_published_abpn_converts_to_published_abpn_et():
    weights = os.path.join(shared_dir(), "weights", "etds_repo_x3")

    def load(model, fname):
        net = create_model(model, "M4C28", 3)
        params = convert_torch_state_dict(net, load_torch_state_dict(os.path.join(weights, fname)))
        ms.load_param_into_net(net, {k: ms.Parameter(ms.Tensor(v), name=k) for k, v in params.items()})
        return net
    abpn, published_et = load("abpn", "ABPN_M4C28_x3.pth"), load("abpn_et", "ABPN_ET_M4C28_x3.pth")
    lr = read_rgb(os.path.join(shared_dir(), "data", "benchmark", "Set5", "LR_bicubic_matlab", "X3", "birdx3.png"))
    x = lr.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    ours = run(abpn_to_et(abpn), x)
    np.testing.assert_allclose(ours, run(abpn, x), atol=1e-5)
    np.testing.assert_allclose(ours, run(published_et, x), atol=1e-5)


def test_training_form_checkpoint_loads_as_deploy_form(tmp_path):
    net = create_model("sesr", "M3", 2, form="train", linear_block_type="collapsed", feature_size=16)
    randomise(net, 0.05)
    path = str(tmp_path / "sesr.ckpt")
    save_checkpoint(net, path, meta=model_meta(net))
    deploy, meta = load_for_inference("sesr", "M3", 2, path, {"n_colors": 3})  # checkpoint options win
    assert meta["form"] == "train" and meta["linear_block_type"] == "collapsed" and meta["n_colors"] == 1
    assert type(deploy).__name__ == "SESRDeploy" and deploy.n_colors == 1
    x = RNG.random((1, 1, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(run(deploy, x), run(net, x), atol=1e-5)


def test_y_channel_model_prediction_recombines_bicubic_chroma():
    net = create_model("sesr", "M3", 2)  # deploy form, n_colors 1
    randomise(net, 0.05)
    lr = RNG.integers(0, 256, (10, 12, 3)).astype(np.uint8)
    from src.data.imresize import imresize
    from src.data.transforms import rgb_to_ycbcr01, ycbcr01_to_rgb
    ycc = rgb_to_ycbcr01(lr / 255.0)
    y = run(net, ycc[None, None, :, :, 0].astype(np.float32))[0, 0]
    expected = ycbcr01_to_rgb(np.concatenate([y[..., None], imresize(ycc[..., 1:], 2.0)], axis=2))
    got = SRPredictor(net, 2, tile_size=-1).predict_float(lr)[0].transpose(1, 2, 0)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(rgb_to_ycbcr01(ycbcr01_to_rgb(ycc)), ycc, atol=1e-12)


def test_x4_from_x2_checkpoint_copies_all_but_output_layer(tmp_path):
    x2 = create_model("sesr", "M5", 2, form="train")
    path = str(tmp_path / "x2.ckpt")
    save_checkpoint(x2, path, meta=model_meta(x2))
    x4 = create_model("sesr", "M5", 4, form="train")
    copied, skipped = transfer_weights(x4, path)  # skipped: x4 tensors kept at init
    assert sorted(skipped) == ["output_block.project.bias", "output_block.project.weight"]
    assert len(copied) == len(list(x2.get_parameters())) - 2
    np.testing.assert_array_equal(x4.blocks[2].expand.weight.asnumpy(), x2.blocks[2].expand.weight.asnumpy())
