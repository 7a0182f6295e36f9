"""Every registered model declares one interface (issue 15, part 1; after timm's tests over list_models()).

For every family x colours (1 and 3 where the family takes them) x form (train, deploy):
- it is an SRNet whose declared ``scale`` / ``n_colors`` are the shapes it really maps;
- its ``spec`` says what was built; the deploy form of a training net gives the same output;
- the spec survives a checkpoint save and load; equalization pairs and residual parameters name real layers.
Families are registered once, in their own files, and the rest of the code derives from the records.
"""
import os

import numpy as np
import pytest
import yaml
from mindspore import Tensor, nn

from conftest import ROOT
from src.models.base import ASSUMED_RADIUS, ModelSpec, SRNet
from src.models.family import FAMILIES, Family, register_family
from src.models.registry import (FORMS, OPTION_KEYS, create_model, default_variants, has_training_form, list_models,
                                 to_deploy, to_equivalent)
from src.weights.checkpoint import META_KEYS, model_meta, read_checkpoint, save_checkpoint
from src.weights.loader import load_for_inference

SMALL = {"abpn": "M2C8", "abpn_et": "M2C8", "ecbsr": "M2C8", "ecbsr_et": "M2C8", "edsr": "baseline",
         "etds": "M2C8", "sesr": "M3"}
COLOURS = {"edsr": (3,)}  # EDSR's mean shift is RGB only


def _cases():
    for model in list_models():
        for n_colors in COLOURS.get(model, (1, 3)):
            for form in FORMS:
                if form == "deploy" or has_training_form(model):
                    yield model, n_colors, form


CASES = list(_cases())


def _randomised(net, seed=0):
    """Every parameter random (the ETDS residual stream and the ECB scales start at special values)."""
    rng = np.random.default_rng(seed)
    for p in net.get_parameters():
        p.set_data(Tensor((rng.standard_normal(p.shape) * 0.1).astype(np.float32)))
    return net


def _run(net, x):
    net.set_train(False)
    return net(Tensor(x)).asnumpy()


def test_the_cases_cover_every_registered_model():
    assert {c[0] for c in CASES} == set(list_models()) == set(SMALL)


@pytest.mark.parametrize("model,n_colors,form", CASES)
def test_declared_interface_matches_the_network(model, n_colors, form, tmp_path):
    net = create_model(model, SMALL[model], 2, form=form, n_colors=n_colors)
    assert isinstance(net, SRNet)
    assert net.spec == ModelSpec.of(model, SMALL[model], 2, form, dict(net.spec.options))
    assert net.spec.options.get("n_colors", 3) == n_colors
    assert (net.scale, net.n_colors) == (2, n_colors)
    assert (net.model_name, net.variant, net.form) == (model, SMALL[model], form)
    assert isinstance(net.receptive_radius, int) and 1 <= net.receptive_radius < ASSUMED_RADIUS * 3
    assert net.peak_channels is not None and net.peak_channels >= n_colors * 4
    names = {name for name, _ in net.cells_and_names()}
    assert all(a in names and b in names for a, b in net.equalization_pairs())
    assert set(p.name for p in net.residual_parameters()) <= set(p.name for p in net.trainable_params())
    assert net.has_train_outputs == (model == "etds" and form == "train") and net.train_outputs is False

    x = np.random.default_rng(1).random((1, n_colors, 6, 7)).astype(np.float32)
    y = _run(net, x)
    assert y.shape == (1, n_colors, 12, 14) and np.isfinite(y).all()

    deployed = to_deploy(net)
    assert isinstance(deployed, SRNet) and deployed.spec == net.spec.deployed()
    assert (deployed.scale, deployed.n_colors) == (net.scale, net.n_colors)
    np.testing.assert_allclose(_run(deployed, x), y, atol=2e-5, rtol=0)


@pytest.mark.parametrize("model,n_colors,form", CASES)
def test_the_spec_survives_save_and_load(model, n_colors, form, tmp_path):
    net = _randomised(create_model(model, SMALL[model], 2, form=form, n_colors=n_colors))
    path = str(tmp_path / "net.ckpt")
    save_checkpoint(net, path, meta=model_meta(net))
    _, meta = read_checkpoint(path)
    assert meta == net.spec.meta() and set(meta) <= set(META_KEYS)
    loaded, _ = load_for_inference(model, SMALL[model], 2, path)
    assert loaded.spec == net.spec.deployed()
    x = np.random.default_rng(2).random((1, n_colors, 5, 6)).astype(np.float32)
    expected = _run(to_deploy(net), x)
    np.testing.assert_allclose(_run(loaded, x), expected, atol=2e-5, rtol=0)


@pytest.mark.parametrize("model,n_colors", [("abpn", 3), ("ecbsr", 1)])
def test_equivalent_forms_are_reachable_from_the_registry(model, n_colors):
    net = _randomised(create_model(model, "M2C8", 3, n_colors=n_colors), seed=3)
    et = to_equivalent(net, f"{model}_et")
    assert et.spec == ModelSpec.of(f"{model}_et", "M2C8", 3, "deploy", net.spec.options)
    x = np.random.default_rng(4).random((1, n_colors, 5, 6)).astype(np.float32)
    np.testing.assert_allclose(_run(et, x), np.clip(_run(net, x), 0, 1), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="not an equivalent form"):
        to_equivalent(net, "ecbsr_et" if model == "abpn" else "abpn_et")


def test_quantized_network_keeps_the_interface():
    from src.quantlib.quant_layers import QuantConfig, quantize_model  # pylint: disable=import-outside-toplevel
    net = create_model("abpn", "M2C8", 2, n_colors=1)
    spec, pairs, radius = net.spec, net.equalization_pairs(), net.receptive_radius
    quantize_model(net, QuantConfig(w_bit=8, a_bit=8))
    assert (net.spec, net.equalization_pairs(), net.receptive_radius, net.n_colors) == (spec, pairs, radius, 1)


def test_spec_is_frozen_and_old_names_are_read_only():
    net = create_model("sesr", "M3", 2)
    with pytest.raises(AttributeError):
        net.spec.form = "train"
    with pytest.raises(AttributeError):
        net.variant = "M5"
    assert net.options == {"n_colors": 1} and net.spec.meta() == {"model": "sesr", "variant": "M3", "scale": 2,
                                                                  "form": "deploy", "n_colors": 1}


def test_a_plain_cell_has_the_default_interface():
    class Tiny(SRNet):
        def __init__(self):
            super().__init__(2)
            self.conv = nn.Conv2d(3, 12, 3, pad_mode="same", has_bias=True)
    tiny = Tiny()
    assert (tiny.n_colors, tiny.receptive_radius, tiny.peak_channels, tiny.spec) == (3, ASSUMED_RADIUS, None, None)
    assert tiny.equalization_pairs() == [] and tiny.residual_parameters() == [] and not tiny.has_train_outputs
    assert model_meta(tiny) == {"model": "", "variant": "", "scale": 2, "form": "deploy"}


def test_families_register_once_and_the_registry_derives_from_them():
    assert set(FAMILIES) == set(list_models())
    with pytest.raises(ValueError, match="registered twice"):
        register_family(Family("abpn", {}, "M4C28", build_deploy=None))
    assert OPTION_KEYS == ("n_colors", "act", "linear_block_type", "feature_size", "adder_eta")
    assert META_KEYS == ("model", "variant", "scale", "form") + OPTION_KEYS + ("quant_config", "quant_method")
    with open(os.path.join(ROOT, "DIV2K_config.yaml"), encoding="utf-8") as handle:
        yaml_defaults = next(yaml.safe_load_all(handle))["default_variants"]
    # the config loader keeps its YAML copy (it fills --variant before any model code loads): it must agree
    assert yaml_defaults == {k: v for k, v in default_variants().items() if k in yaml_defaults}


def test_runner_for_an_exported_file_declares_the_interface(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper  # pylint: disable=import-outside-toplevel
    from src.runtime.runners import open_exported  # pylint: disable=import-outside-toplevel
    from src.runtime.metadata import attach_onnx_metadata, export_metadata  # pylint: disable=import-outside-toplevel
    net = create_model("abpn", "M2C8", 2, n_colors=1)
    repeats = helper.make_tensor("repeats", TensorProto.INT64, [4], [1, 4, 1, 1])
    graph = helper.make_graph(
        [helper.make_node("Tile", ["x", "repeats"], ["t"]),
         helper.make_node("DepthToSpace", ["t"], ["y"], blocksize=2)],
        "nearest", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, "h2", "w2"])], [repeats])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = str(tmp_path / "nearest.onnx")
    onnx.save(attach_onnx_metadata(model, export_metadata(net)), path)
    runner = open_exported(path, log=lambda *_: None)
    assert (runner.scale, runner.n_colors, runner.receptive_radius, runner.peak_channels) == \
        (net.scale, net.n_colors, net.receptive_radius, net.peak_channels)
    assert runner.spec == ModelSpec.of("abpn", "M2C8", 2)
    x = np.random.default_rng(5).random((1, 1, 4, 5)).astype(np.float32)
    np.testing.assert_array_equal(runner(Tensor(x)).asnumpy(), np.repeat(np.repeat(x, 2, axis=2), 2, axis=3))
