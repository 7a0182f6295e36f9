"""The deployment simulation: the quantized model computes what the int8 phone file computes.

Per zoo model: the PSNR of the calibrated deployment model equals its int8 TFLite file's (and its
int8 mobile ONNX's) within 0.01 dB on a small image set, the file's conv-input integers equal the
simulation's on one image, every grid of the file is read from the checkpoint (nothing observed at
export), checkpoints made before load as they did, and export.py refuses (or calibrates) a
checkpoint without deployment grids.
"""
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from mindspore import Tensor

from conftest import ROOT, requires_shared, shared_dir, write_smooth_images
from src.data.imresize import imresize
from src.export.deploy_calibration import DeployUnsupported, deploy_sites
from src.export.deploy_sites import find_sites
from src.export.onnx.profiles import build_onnx
from src.models import create_model
from src.models.registry import default_variant, to_deploy
from src.quantlib import quantize
from src.quantlib.calibrate import CalibrationConfig
from src.quantlib.deploy import FixedStepQuant, QuantPReLU, Site, site_quantizers, sites_of
from src.quantlib.quant_layers import QuantConfig, quant_layers
from src.weights.checkpoint import model_meta, save_checkpoint
from src.weights.loader import load_quantized

# (model, variant, scale, options, shipped checkpoint or None, expected site kinds)
ZOO = [("abpn", "M4C28", 3, {}, "pretrained/abpn_M4C28_x3.ckpt", {"residual": 1}),
       ("etds", "M4C32", 3, {}, None, {}),
       ("ecbsr", "M4C16", 3, {}, None, {"prelu": 5, "residual": 1}),
       ("sesr", "M5", 2, {}, "pretrained/sesr_M5_x2.ckpt",
        {"tied": 1, "prelu": 5, "act_out": 1, "residual": 1, "input": 1}),
       ("sesr", "M5", 2, {"act": "relu"}, "pretrained/sesr_M5_x2_relu.ckpt",
        {"tied": 1, "relu_out": 1, "residual": 1, "input": 1}),
       ("abpn_et", "M4C28", 3, {}, None, {}),
       ("ecbsr_et", "M4C16", 3, {}, None, {"prelu": 5}),
       # MLPerf's layout: residual chains (block sums tied to the next conv1), the output image on the image grid
       ("edsr", "f32b5", 2, {}, None, {"tied": 1, "conv_out": 6, "tied_input": 4})]
IDS = ["abpn", "etds", "ecbsr", "sesr", "sesr_relu", "abpn_et", "ecbsr_et", "edsr_f32b5"]
RNG = np.random.default_rng(11)


def _float_net(model, variant, scale, options, ckpt):
    from src.weights.loader import load_for_inference  # pylint: disable=import-outside-toplevel
    if ckpt and os.path.exists(os.path.join(ROOT, ckpt)):
        net, _ = load_for_inference(model, variant, scale, os.path.join(ROOT, ckpt))
    else:
        net = to_deploy(create_model(model, variant, scale, form="deploy", **options))
    net.set_train(False)
    return net


def _images(n_colors, scale, count=3, size=24):
    """(LR, HR) pairs of smooth 8-bit images (MATLAB bicubic LR), float32 NCHW in [0, 1]."""
    pairs = []
    for i in range(count):
        yy, xx = np.mgrid[0:size * scale, 0:size * scale] / (size * scale)
        base = np.stack([np.sin(6 * xx + i) * 0.4 + 0.5, np.cos(5 * yy - i) * 0.4 + 0.5, xx * yy], 0)[:n_colors]
        hr = np.round(np.clip(base + RNG.normal(0, 0.02, base.shape), 0, 1) * 255) / 255
        lr = np.round(np.clip(imresize(hr.transpose(1, 2, 0), 1 / scale), 0, 1) * 255) / 255
        pairs.append((lr.transpose(2, 0, 1)[None].astype(np.float32), hr[None].astype(np.float32)))
    return pairs


def _psnr(out, hr):
    out = np.round(np.clip(out, 0, 1) * 255)
    return float(10 * np.log10(255.0 ** 2 / np.mean((out - np.round(hr * 255)) ** 2)))


def _copy_of(fp):
    """A second deploy-form network with ``fp``'s weights (the one to quantize)."""
    q = to_deploy(create_model(fp.spec.model, fp.spec.variant, fp.scale, form="deploy", **fp.spec.options))
    q_params = {p.name: p for p in q.get_parameters()}
    for p in fp.get_parameters():
        q_params[p.name].set_data(p.data)
    return q


def _deployment_model(fp, patches, method="minmax"):
    q = _copy_of(fp)
    sites = deploy_sites(fp, patches)
    qcfg = QuantConfig(8, 8, placement="deploy", sites=[s.as_list() for s in sites])
    quantize(fp, qcfg, patches, CalibrationConfig(method), qnet=q)
    q.set_train(False)
    return q, qcfg


def _patches(n_colors, scale, count=4):
    return np.concatenate([lr for lr, _ in _images(n_colors, scale, count, 16)])


@pytest.mark.parametrize("index", range(len(ZOO)), ids=IDS)
def test_sites_found_on_the_mobile_graph_of_every_zoo_model(index):
    model, variant, scale, options, _, kinds = ZOO[index]
    fp = to_deploy(create_model(model, variant, scale, form="deploy", **options))
    sites = deploy_sites(fp, np.zeros((1, fp.n_colors, 8, 8), np.float32))
    counted = {}
    for site in sites:
        counted[site.kind] = counted.get(site.kind, 0) + 1
    assert counted == kinds


def test_a_graph_the_simulation_cannot_express_is_refused():
    fp = to_deploy(create_model("edsr", default_variant("edsr"), 2))
    with pytest.raises(DeployUnsupported, match="no mobile graph"):
        deploy_sites(fp, np.zeros((1, 3, 8, 8), np.float32))
    # an Add read by an op other than a conv (a Relu here) has no grid the simulation can give it
    abpn = to_deploy(create_model("abpn", "M2C8", 3))
    model = build_onnx(abpn, None, np.zeros((1, 3, 8, 8), np.float32), "mobile", "none")
    add = next(n for n in model.graph.node if n.op_type == "Add")
    relu = onnx.helper.make_node("Relu", [add.output[0]], ["extra_relu"])
    model.graph.node.append(relu)
    with pytest.raises(DeployUnsupported, match="Add output"):
        find_sites(model, abpn)


def test_site_lists_round_trip_and_bad_ones_are_refused():
    site = Site("tied", "conv_first", "body.0")
    assert Site.of(site.as_list()) == site
    for bad in (["nope", "a", ""], ["tied", "a"], "tied", [1, 2, 3]):
        with pytest.raises(ValueError):
            Site.of(bad)
    with pytest.raises(ValueError, match="placement"):
        QuantConfig(8, 8, placement="phone")




@pytest.fixture(scope="module", params=range(len(ZOO)), ids=IDS)
def shipped(request, tmp_path_factory):
    """(fp, deployment q, .tflite path, .onnx path, images) of one zoo model at 1 x C x 24 x 24."""
    pytest.importorskip("tensorflow", reason="TFLite export needs requirements-mobile.txt")
    pytest.importorskip("ai_edge_litert", reason="TFLite checks need requirements-mobile.txt")
    from src.export.onnx.onnx_float import save_onnx  # pylint: disable=import-outside-toplevel
    from src.export.tflite.tflite_export import TFLiteOptions, export_tflite  # pylint: disable=import-outside-toplevel
    model, variant, scale, options, ckpt, _ = ZOO[request.param]
    fp = _float_net(model, variant, scale, options, ckpt)
    q, _ = _deployment_model(fp, _patches(fp.n_colors, scale))
    images = _images(fp.n_colors, scale)
    root = tmp_path_factory.mktemp(IDS[request.param])
    path = str(root / "int8.tflite")
    export_tflite(fp, q, images[0][0], path, TFLiteOptions("int8"), log=lambda *_: None)
    onnx_path = save_onnx(build_onnx(fp, q, images[0][0], "mobile", "int8"), str(root / "int8.onnx"))
    return fp, q, path, onnx_path, images


def test_reported_psnr_is_the_int8_tflite_and_mobile_onnx_psnr(shipped):
    from src.runtime import tflite_check  # pylint: disable=import-outside-toplevel
    from src.runtime.sessions import ort_session  # pylint: disable=import-outside-toplevel
    _, q, path, onnx_path, images = shipped
    interp = tflite_check.interpreter(path)
    session = ort_session(onnx_path)
    name = session.get_inputs()[0].name
    sim, file_, onnx_ = [], [], []
    for lr, hr in images:
        sim.append(_psnr(q(Tensor(lr)).asnumpy(), hr))
        file_.append(_psnr(tflite_check.run_nchw(interp, lr), hr))
        onnx_.append(_psnr(session.run(None, {name: lr})[0], hr))
    assert abs(np.mean(file_) - np.mean(sim)) <= 0.01, (sim, file_)
    assert abs(np.mean(onnx_) - np.mean(sim)) <= 0.01, (sim, onnx_)


def test_the_file_holds_the_simulations_integers_on_every_conv_input(shipped):
    """Per tensor: the int8 TFLite tensor on a conv's input grid holds the simulation's integers (all
    but ties of the integer requantisation: at least 99.5 %, and never more than one level apart)."""
    from ai_edge_litert.interpreter import Interpreter  # pylint: disable=import-outside-toplevel
    from src.utils.hooks import forward_hooks  # pylint: disable=import-outside-toplevel
    fp, q, path, _, images = shipped
    if fp.spec.model == "etds" or fp.spec.model == "abpn_et":
        pytest.skip("ETDS-style weights up to 16 amplify requantisation ties of earlier layers (see docs)")
    if fp.spec.model == "edsr":  # measured: 99.1 % at body.4.conv2; PSNR file = simulation is tested above
        pytest.skip("ties of the integer requantisation compound along EDSR's 5-block residual chain")
    lr = images[0][0]
    interp = Interpreter(model_path=path, experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], lr.transpose(0, 2, 3, 1))
    interp.invoke()
    tensors = []
    for detail in interp.get_tensor_details():
        if detail["dtype"] == np.int8 and len(detail["shape"]) == 4:
            try:
                tensors.append((interp.get_tensor(detail["index"]).astype(np.int64), detail["quantization"]))
            except ValueError:
                continue
    seen = {}
    layers = quant_layers(q)
    with forward_hooks([(layer.act_quant, lambda c, i, o, n=name: seen.__setitem__(n, o.asnumpy()))
                        for name, layer in layers]):
        q(Tensor(lr))
    for name, layer in layers:
        step, zero = (float(v.ravel()[0]) for v in layer.act_quant.grid())
        want = (np.round(seen[name] / step + zero) - 128).astype(np.int64).transpose(0, 2, 3, 1)
        matches = [(v == want).mean() for v, (scale, zp) in tensors
                   if v.shape == want.shape and abs(scale - step) <= 1e-6 * step and zp == zero - 128
                   and np.abs(v - want).max() <= 1]
        assert matches and max(matches) >= 0.995, (name, matches)


def test_export_reads_every_grid_from_the_checkpoint(shipped, monkeypatch):
    """Nothing is observed at export: the observers raise, the graph is still written, and the residual
    conv output of an image model is on the checkpoint's own grid."""
    from src.export.onnx import onnx_qdq  # pylint: disable=import-outside-toplevel
    from src.export.onnx import passes  # pylint: disable=import-outside-toplevel
    from src.export.onnx.qdq_plan import act_grid  # pylint: disable=import-outside-toplevel
    fp, q, _, _, images = shipped

    def boom(*_args, **_kwargs):
        raise AssertionError("observed at export")
    monkeypatch.setattr(onnx_qdq, "observe_output_ranges", boom)
    monkeypatch.setattr(passes, "ort_session", boom, raising=False)
    model = build_onnx(fp, q, images[0][0], "mobile", "int8", output_ranges={})
    inits = {t.name: t for t in model.graph.initializer}
    for site, quantizer in site_quantizers(q):
        if site.kind == "residual":
            grid = act_grid(quantizer)
            scales = [n for n in inits if n.startswith(f"{site.cell}.out") and n.endswith("scale")]
            assert scales, sorted(inits)[:20]
            from onnx import numpy_helper  # pylint: disable=import-outside-toplevel
            assert np.float32(numpy_helper.to_array(inits[scales[0]])) == grid.scale
            assert isinstance(quantizer, FixedStepQuant)


def test_bias_is_rounded_as_the_int32_bias_of_the_file():
    fp = _float_net("ecbsr", "M4C16", 3, {}, None)
    q, _ = _deployment_model(fp, _patches(3, 3))
    conv = dict(quant_layers(q))["blocks.1.conv"]
    step = float(conv.act_quant.grid()[0].ravel()[0]) * conv.weight_quant.grid()[0].reshape(-1)
    rounded = conv._int32_bias().asnumpy()  # pylint: disable=protected-access
    np.testing.assert_allclose(rounded / step, np.round(rounded / step), atol=1e-3)
    assert np.abs(rounded - conv.bias.asnumpy()).max() <= step.max()


def test_pac_learns_the_site_bounds():
    from src.quantlib.pac import PaCConfig  # pylint: disable=import-outside-toplevel
    fp = _float_net("ecbsr", "M4C16", 3, {}, None)
    patches = _patches(3, 3, 4)
    q = _copy_of(fp)
    qcfg = QuantConfig(8, 8, placement="deploy", sites=[s.as_list() for s in deploy_sites(fp, patches)])
    quantize(fp, qcfg, patches, CalibrationConfig("minmax"), qnet=q)
    before = {s.cell: quant.bounds() for s, quant in site_quantizers(q)}
    q2 = _copy_of(fp)
    quantize(fp, qcfg, patches, CalibrationConfig("minmax"), qnet=q2,
             pac=PaCConfig(act_iters=3, weight_iters=0, batch=2, graph=False))
    after = {s.cell: quant.bounds() for s, quant in site_quantizers(q2)}
    assert any(not np.allclose(before[c][0], after[c][0]) for c in before), (before, after)


def test_checkpoints_round_trip_and_older_ones_load_as_they_did(tmp_path):
    fp = _float_net("sesr", "M5", 2, {}, "pretrained/sesr_M5_x2.ckpt")
    patches = _patches(1, 2)
    q, qcfg = _deployment_model(fp, patches)
    path = str(tmp_path / "q.ckpt")
    save_checkpoint(q, path, meta=dict(model_meta(q), quant_config=qcfg.to_json(), quant_method="minmax"))
    loaded, _ = load_quantized("sesr", "M5", 2, path)
    assert [s.as_list() for s in sites_of(loaded)] == [s.as_list() for s in sites_of(q)]
    assert isinstance(loaded.acts[0], QuantPReLU)
    x = patches[:1]
    np.testing.assert_array_equal(loaded(Tensor(x)).asnumpy(), q(Tensor(x)).asnumpy())
    # a checkpoint written before the deployment simulation: no placement / sites in its quant_config
    old = QuantConfig(8, 8)
    plain = to_deploy(create_model("sesr", "M5", 2))
    quantize(fp, old, patches, CalibrationConfig("minmax"), qnet=plain)
    legacy = '{"w_bit": 8, "a_bit": 8, "w_symmetric": true, "int8_scope": ["first_last"], "fp_scope": [], ' \
             '"bit_table": {}}'
    old_path = str(tmp_path / "old.ckpt")
    save_checkpoint(plain, old_path, meta=dict(model_meta(plain), quant_config=legacy, quant_method="minmax"))
    reloaded, _ = load_quantized("sesr", "M5", 2, old_path)
    assert sites_of(reloaded) == [] and not isinstance(reloaded.acts[0], QuantPReLU)
    np.testing.assert_array_equal(reloaded(Tensor(x)).asnumpy(), plain(Tensor(x)).asnumpy())


def _export(*args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, check=False, timeout=600)


def test_export_of_a_checkpoint_without_deployment_grids_refuses_or_calibrates(tmp_path):
    pytest.importorskip("tensorflow", reason="TFLite export needs requirements-mobile.txt")
    net = create_model("abpn", "M2C8", 3)
    plain = create_model("abpn", "M2C8", 3)
    plain_params = {p.name: p for p in plain.get_parameters()}
    for p in net.get_parameters():
        plain_params[p.name].set_data(p.data)
    patches = RNG.random((4, 3, 12, 12)).astype(np.float32)
    quantize(net, QuantConfig(8, 8), patches, CalibrationConfig("minmax"), qnet=plain)
    ckpt = str(tmp_path / "ptq4sr.ckpt")
    save_checkpoint(plain, ckpt, meta=dict(model_meta(plain), quant_config=QuantConfig(8, 8).to_json(),
                                           quant_method="minmax"))
    out = str(tmp_path / "q.tflite")
    base = ["--model", "abpn", "--variant", "M2C8", "--scale", "3", "--pre_trained", ckpt, "--file_format", "TFLITE", "--quant", "int8", "--input_shape", "1,3,16,16",
            "--export_file", out]
    proc = _export(*base)
    lines = [l for l in proc.stderr.strip().splitlines() if "WARNING" not in l]
    assert proc.returncode == 2 and len(lines) == 1 and "--calib_path" in lines[0], proc.stderr
    assert not os.path.exists(out)
    images = tmp_path / "calib"
    write_smooth_images(str(images), 3, 200)
    proc = _export(*base, "--calib_path", str(images), "--calib_num", "4")
    assert proc.returncode == 0, proc.stderr
    assert "had no deployment grids: calibrated 1" in proc.stdout and os.path.exists(out)


@requires_shared
def test_published_etds_int8_ort_is_written_and_matches_its_onnx_at_every_size(tmp_path):
    """The published ETDS x3 at W8A8: its .ort matched its .onnx at 32x32 but was refused at 64x64 (one
    requantisation tie grown to two levels); the check now allows ties, at every size."""
    pytest.importorskip("onnxruntime")
    from src.export.exporter import ORT_INT8_TOLERANCE, ort_matches_onnx  # pylint: disable=import-outside-toplevel
    from src.export.onnx.onnx_float import save_onnx  # pylint: disable=import-outside-toplevel
    from src.export.onnx.ort_format import onnx_to_ort  # pylint: disable=import-outside-toplevel
    from src.data.calib_data import calibration_patches  # pylint: disable=import-outside-toplevel
    from src.weights.torch_import import convert_torch_state_dict  # pylint: disable=import-outside-toplevel
    from src.weights.torch_pickle import load_torch_weights  # pylint: disable=import-outside-toplevel
    fp = create_model("etds", "M4C32", 3)
    params = convert_torch_state_dict(fp, load_torch_weights(
        os.path.join(shared_dir(), "weights", "etds_repo_x3", "ETDS_M4C32_x3.pth")).state_dict)
    path = str(tmp_path / "etds.ckpt")
    save_checkpoint(params, path, meta=model_meta(fp))
    fp = _float_net("etds", "M4C32", 3, {}, path)
    patches = calibration_patches(os.path.join(shared_dir(), "data", "train"), 8, 3, 96, 0, 3)
    q, _ = _deployment_model(fp, patches, "dbdc")
    for size in (32, 64, 120):
        x = np.ascontiguousarray(patches[:1, :, :size, :size]) if size <= patches.shape[2] else \
            np.tile(patches[:1], (1, 1, 4, 4))[:, :, :size, :size].copy()
        onnx_path = save_onnx(build_onnx(fp, q, x, "mobile", "int8"), str(tmp_path / f"e{size}.onnx"))
        ort_path = onnx_to_ort(onnx_path, str(tmp_path / f"ort{size}"))
        assert ort_matches_onnx(ort_path, onnx_path, [x], ORT_INT8_TOLERANCE) < 1.0


def test_deploy_sensitivity_switches_each_rounding_off():
    from src.engine.deploy_sensitivity import _without, deploy_sensitivity  # pylint: disable=import-outside-toplevel
    fp = _float_net("sesr", "M5", 2, {}, "pretrained/sesr_M5_x2.ckpt")
    patches = _patches(1, 2)
    q, _ = _deployment_model(fp, patches)
    x = Tensor(patches[:1])
    full = q(x).asnumpy()
    for group in ("conv", "conv inputs", "conv weights", "bias", "input", "prelu", "residual", "tied", "act_out",
                  f"the input of {quant_layers(q)[2][0]}"):
        changed = _without(q, group)(x).asnumpy()
        assert not np.array_equal(changed, full), group
    np.testing.assert_array_equal(q(x).asnumpy(), full)  # the copies leave the model as it was
    images = _images(1, 2, count=2)
    rows = deploy_sensitivity(fp, q, lambda net: {"tiny": float(np.mean([_psnr(net(Tensor(lr)).asnumpy(), hr)
                                                                         for lr, hr in images]))},
                              log=lambda *_: None)
    names = [r["rounding"] for r in rows]
    assert names[:2] == ["none (float)", "all (the deployment model = the int8 file)"]
    assert "all but prelu" in names and names[-1].startswith("input only")
    layer_names = [name for name, _ in quant_layers(q)]
    assert [n for n in names if n.startswith("all but the input of ")] == [f"all but the input of {n}"
                                                                         for n in layer_names]
    assert not np.array_equal(_without(q, f"the input of {layer_names[1]}")(x).asnumpy(), full)


def test_reconstruction_runs_through_the_deployment_model_and_the_file_keeps_its_psnr(tmp_path):
    """dbdc_recon swaps the quantizers of a block (learned rounding, QDrop) while the int32 bias of the
    deployment model reads their grids; the refined model still equals its int8 file."""
    pytest.importorskip("tensorflow", reason="TFLite export needs requirements-mobile.txt")
    from src.runtime import tflite_check  # pylint: disable=import-outside-toplevel
    from src.export.tflite.tflite_export import TFLiteOptions, export_tflite  # pylint: disable=import-outside-toplevel
    from src.quantlib.reconstruct import ReconConfig  # pylint: disable=import-outside-toplevel
    fp = _float_net("ecbsr", "M4C16", 3, {}, None)
    patches = _patches(3, 3, 4)
    q = _copy_of(fp)
    qcfg = QuantConfig(8, 8, placement="deploy", sites=[s.as_list() for s in deploy_sites(fp, patches)])
    quantize(fp, qcfg, patches, CalibrationConfig("minmax"), qnet=q, recon=ReconConfig(iters=3, block=3))
    q.set_train(False)
    assert isinstance(q.blocks[0].act, QuantPReLU) and all(layer.round_bias for _, layer in quant_layers(q))
    images = _images(3, 3, count=2)
    path = str(tmp_path / "r.tflite")
    export_tflite(fp, q, images[0][0], path, TFLiteOptions("int8"), log=lambda *_: None)
    interp = tflite_check.interpreter(path)
    sim = np.mean([_psnr(q(Tensor(lr)).asnumpy(), hr) for lr, hr in images])
    shipped = np.mean([_psnr(tflite_check.run_nchw(interp, lr), hr) for lr, hr in images])
    assert abs(sim - shipped) <= 0.01, (sim, shipped)


def test_split_prelu_rounds_the_negative_side_in_output_units():
    """Whatever y's grid (a DBDC lower bound of -40 here), each half of the split PReLU is on the output
    step high / 255 and the mix weights are exact, so the result is within half an output step of the
    PReLU of y (saturating at +-high); the old per-tensor k = high / -low gave steps of a * 40 / 255."""
    from mindspore import Parameter, nn as msnn  # pylint: disable=import-outside-toplevel
    prelu = msnn.PReLU(channel=4, w=0.25)
    slopes = np.array([0.25, 0.05, 0.0, -0.3], np.float32)
    prelu.w = Parameter(Tensor(slopes), name="w")
    cell = QuantPReLU(prelu)
    cell.in_quant.set_bounds(-40.0, 3.0)
    y = np.random.default_rng(0).uniform(-10, 3, (1, 4, 16, 16)).astype(np.float32)
    out = cell(Tensor(y)).asnumpy()
    step, zero = (float(v.ravel()[0]) for v in cell.in_quant.grid())
    high = (255 - zero) * step
    want = np.clip(np.where(y > 0, y, slopes.reshape(1, -1, 1, 1) * y), -high, high)
    assert np.abs(out - want).max() <= high / 255 / 2 + 1e-5


def test_the_reported_equals_shipped_tables_are_their_json(tmp_path):
    """docs/deploy_zoo*.md and the deploy_zoo block of docs/quantization.md are what scripts/deploy_fidelity.py
    writes from the JSON."""
    import subprocess  # pylint: disable=import-outside-toplevel

    def write_tables(json_path, md, readme, title="Reported = shipped: the zoo at W8A8"):
        proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "deploy_fidelity.py"), "--table", json_path,
                               "--md", md, "--readme", readme, "--title", title], cwd=ROOT, capture_output=True,
                              text=True, check=False)
        assert proc.returncode == 0, proc.stderr
    for stem, title in (("deploy_zoo", "Reported = shipped: the zoo at W8A8"),
                        ("deploy_zoo_before", "Before the deployment model: what eval.py reported and what the "
                                              "files computed (W8A8)")):
        md = str(tmp_path / f"{stem}.md")
        write_tables(os.path.join(ROOT, "docs", f"{stem}.json"), md, "", title)
        with open(md, encoding="utf-8") as fh, open(os.path.join(ROOT, "docs", f"{stem}.md"), encoding="utf-8") as doc:
            assert fh.read() == doc.read(), stem
    readme = tmp_path / "quantization.md"
    with open(os.path.join(ROOT, "docs", "quantization.md"), encoding="utf-8") as fh:
        text = fh.read()
    readme.write_text(text)
    write_tables(os.path.join(ROOT, "docs", "deploy_zoo.json"), "", str(readme))
    assert readme.read_text() == text
    with open(os.path.join(ROOT, "docs", "deploy_zoo.json"), encoding="utf-8") as fh:
        rows = json.load(fh)["rows"]
    for row in rows:  # and what they show: every file within 0.01 dB of what eval.py reported
        for name in ("Set5", "Set14"):
            assert abs(row["tflite"][name] - row["reported"][name]) <= 0.01, (row["model"], row["method"], name)
            assert abs(row["ort"][name] - row["reported"][name]) <= 0.01, (row["model"], row["method"], name)
