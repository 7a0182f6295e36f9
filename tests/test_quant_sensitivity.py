"""Per-layer quantization sensitivity (scripts/quant_sensitivity.py, src/engine/sensitivity.py), the
one-calibration switch behind it (restrict_quantization) and the Hessian weight grid."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from mindspore import Tensor, nn

from conftest import ROOT, write_quant_run
from src.models import create_model
from src.quantlib import CalibrationConfig, QuantConfig, quantize, restrict_quantization
from src.quantlib.calibrate import collect_activation_bounds
from src.quantlib.quant_layers import quant_layers, quantizable_layers
from src.quantlib.weight_grid import STEPS, hessian_steps, input_columns
from src.engine.sensitivity import row_configs


def _seeded(net, seed=3):
    rng = np.random.default_rng(seed)
    for _, p in net.parameters_and_names():
        value = rng.standard_normal(p.shape) * 0.2
        if value.ndim == 4:
            value = value * np.exp(rng.uniform(-1, 1, (value.shape[0], 1, 1, 1)))
        p.set_data(Tensor(value.astype(np.float32)))
    return net


def _etds():
    """A tiny ETDS deploy form (merged residual channels, clip tail, 27 -> 28 padding at x3)."""
    return _seeded(create_model("etds", "M2C8", 3))


PATCHES = np.random.default_rng(5).random((6, 3, 12, 12)).astype(np.float32)
X = Tensor(np.random.default_rng(9).random((1, 3, 10, 10)).astype(np.float32))


def _out(net):
    net.set_train(False)
    return net(X).asnumpy()


@pytest.fixture(scope="module")
def calibrated():
    fp = _etds()
    return fp, quantize(fp, QuantConfig(8, 8), PATCHES, CalibrationConfig("dbdc"))


def test_a_layer_switched_off_is_exactly_float(calibrated):
    fp, q = calibrated
    names = [n for n, _ in quant_layers(q)]
    off = restrict_quantization(q, QuantConfig(8, 8, fp_scope=["*"]))
    assert np.array_equal(_out(off), _out(fp))  # every quantizer off: the float model, bit for bit
    zero = restrict_quantization(q, QuantConfig(8, 8, bit_table={"*": [0, 0]}))
    assert np.array_equal(_out(zero), _out(fp)) and all(b is None for b in zero.quant_plan.values())
    assert not np.array_equal(_out(q), _out(fp))  # while the calibrated model differs
    same = restrict_quantization(q, QuantConfig(8, 8))
    assert np.array_equal(_out(same), _out(q))  # nothing switched off: the calibrated model
    one = restrict_quantization(q, QuantConfig(8, 8, fp_scope=["*"], bit_table={names[1]: [8, 0]}))
    assert one.quant_plan[names[1]] == (8, 0) and sum(b is not None for b in one.quant_plan.values()) == 1
    assert not np.array_equal(_out(one), _out(fp))
    assert q.quant_plan[names[1]] == (8, 8)  # the calibrated model is untouched


def test_one_calibration_equals_calibrating_each_configuration(calibrated):
    fp, q = calibrated
    for name in [n for n, _ in quant_layers(q)]:
        for bits in ([8, 8], [8, 0], [0, 8]):
            cfg = QuantConfig(8, 8, fp_scope=["*"], bit_table={name: bits})
            direct = quantize(_etds(), cfg, PATCHES, CalibrationConfig("dbdc"))
            switched = restrict_quantization(q, cfg)
            assert np.array_equal(_out(direct), _out(switched)), (name, bits)
            layer = dict(quant_layers(direct))[name]
            other = dict(quant_layers(switched))[name]
            pairs = [(layer.weight_quant, other.weight_quant)] * bool(bits[0]) + \
                [(layer.act_quant, other.act_quant)] * bool(bits[1])  # a switched-off quantizer's bounds are unused
            for quant_a, quant_b in pairs:
                for a, b in zip(quant_a.bounds(), quant_b.bounds()):
                    assert np.array_equal(a, b), (name, bits)
            assert (layer.w_bit, layer.a_bit) == (other.w_bit, other.a_bit) == tuple(bits)


def test_restrict_refuses_a_bit_width_it_was_not_calibrated_for(calibrated):
    _, q = calibrated
    with pytest.raises(ValueError, match="w_bit 4 differs from the calibrated 8"):
        restrict_quantization(q, QuantConfig(8, 8, bit_table={"conv_first": [4, 8]}))
    with pytest.raises(ValueError, match="fp_scope pattern 'nope' matches no layer"):
        restrict_quantization(q, QuantConfig(8, 8, fp_scope=["nope"]))


def test_row_configs_cover_every_layer_three_ways_then_the_whole_model(calibrated):
    _, q = calibrated
    names = [n for n, _ in quantizable_layers(_etds())]
    rows = row_configs(q.quant_plan, QuantConfig(8, 8))
    assert [(label, kind) for label, kind, _ in rows] == \
        [(n, k) for n in names for k in ("activation", "weight", "both")] + \
        [("all weights", "weight"), ("all activations", "activation"), ("all", "both")]
    plans = [restrict_quantization(q, cfg).quant_plan for _, _, cfg in rows]
    assert plans[0] == {n: ((0, 8) if n == names[0] else None) for n in names}
    assert plans[-3] == {n: (8, 0) for n in names} and plans[-1] == q.quant_plan


def test_hessian_grid_never_worse_than_minmax_and_keeps_the_float_weights():
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((6, 2, 3, 3)) * 0.02
    weight[:, 0, 1, 1] = 1.0  # an identity-like tap next to small ones (ETDS's residual rows)
    x = rng.random((2, 2, 9, 9)) + 0.5  # smooth, positive: an image stream
    cols = input_columns(x, nn.Conv2d(2, 6, 3, pad_mode="pad", padding=1))
    h = cols.T @ cols
    upper = hessian_steps(weight, h, 127)

    def loss(u):
        step = (u / 127)[:, None]
        w = weight.reshape(6, -1)
        err = np.clip(np.floor(w / step + 0.5), -127, 127) * step - w
        return np.einsum("oi,ij,oj->o", err, h, err)
    minmax = np.abs(weight.reshape(6, -1)).max(axis=1)
    assert np.all(loss(upper) <= loss(minmax)) and np.any(loss(upper) < 0.5 * loss(minmax))
    assert 1.0 in STEPS and np.all((upper >= 0.5 * minmax - 1e-12) & (upper <= 1.2 * minmax + 1e-12))
    fp = _etds()
    q = quantize(fp, QuantConfig(8, 8), PATCHES, CalibrationConfig("dbdc"))
    for (name, layer), (_, cell) in zip(quant_layers(q), quantizable_layers(fp)):
        assert np.array_equal(layer.weight.asnumpy(), cell.weight.asnumpy()), name  # only the bounds moved
    plain = quantize(_etds(), QuantConfig(8, 8), PATCHES, CalibrationConfig("dbdc", weight_grid="minmax"))
    moved = [not np.array_equal(a.weight_quant.bounds()[1], b.weight_quant.bounds()[1])
             for (_, a), (_, b) in zip(quant_layers(q), quant_layers(plain))]
    assert any(moved)
    with pytest.raises(ValueError, match=r"CalibrationConfig.weight_grid 'x': must be one of \['minmax', 'hessian'\]"):
        CalibrationConfig("dbdc", weight_grid="x")


def test_the_image_input_is_bounded_by_its_min_and_max():
    net = _etds()
    first = quantizable_layers(net)[0][0]
    batches = [PATCHES[i:i + 2] for i in range(0, 6, 2)]
    clipped = collect_activation_bounds(net, batches, CalibrationConfig("dbdc"))
    full = collect_activation_bounds(net, batches, CalibrationConfig("dbdc"), input_minmax=True)
    assert full[first] == (float(PATCHES.min()), float(PATCHES.max()))
    assert clipped[first] != full[first]
    assert all(full[n] == clipped[n] for n in full if n != first)


@pytest.fixture(scope="module")
def cli_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("sens")
    return root, write_quant_run(root, _etds())


def _args(root, ckpt, *extra):
    return ["--model", "etds", "--variant", "M2C8", "--scale", "3", "--pre_trained", ckpt,
            "--data_path", str(root / "data"), "--eval_datasets", "Q", "--calib_path", str(root / "calib"),
            "--calib_num", "4", "--pac_hr_patch", "36", "--cache_dir", str(root / "cache"), *extra]


def _run(script, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, *script), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)


def test_cli_rows_and_the_all_row_equals_a_full_quantized_eval(cli_setup, tmp_path):
    root, ckpt = cli_setup
    proc = _run(("scripts", "quant_sensitivity.py"), *_args(root, ckpt, "--output_path", str(tmp_path),
                                                             "--equalize", "True"))
    assert proc.returncode == 0, proc.stderr
    stem = tmp_path / "sensitivity_etds_M2C8_x3_w8a8_dbdc"
    report = json.loads(stem.with_suffix(".json").read_text())
    table = stem.with_suffix(".md").read_text()
    names = [n for n, _ in quantizable_layers(_etds())]
    assert [r["layer"] for r in report["rows"]] == [n for n in names for _ in range(3)] + \
        ["all weights", "all activations", "all"]
    assert all(f"| {n} | W8A8 |" in table for n in names) and "| all | W8A8 |" in table
    assert report["quant"]["method"] == "dbdc" and report["quant"]["equalize"] is True
    for r in report["rows"]:
        assert r["delta"]["Q"] == pytest.approx(r["psnr"]["Q"] - report["fp"]["Q"], abs=1e-12)
    ev = _run(("eval.py",), *_args(root, ckpt, "--quant_method", "dbdc", "--equalize", "True",
                                    "--result_file", str(tmp_path / "e.json")))
    assert ev.returncode == 0, ev.stderr
    full = json.loads((tmp_path / "e.json").read_text())
    assert report["rows"][-1]["psnr"]["Q"] == full["results"]["Q"]["psnr"]
    assert report["fp"]["Q"] == full["results_fp"]["Q"]["psnr"]


@pytest.mark.parametrize("extra,expected", [
    (["--w_bit", "9"], "w_bit must be between 2 and 8"),
    (["--quant_method", "kmeans"], "--quant_method 'kmeans' is not one of"),
    (["--eval_datasets", "Nope"], "Nope"),
])
def test_bad_input_is_one_line_and_exit_2(cli_setup, tmp_path, extra, expected):
    root, ckpt = cli_setup
    proc = _run(("scripts", "quant_sensitivity.py"), *_args(root, ckpt, "--output_path", str(tmp_path), *extra))
    assert proc.returncode == 2
    lines = [l for l in proc.stderr.splitlines() if l.strip() and "WARNING" not in l and not l.startswith(" ")
             and "usage:" not in l]
    assert len(lines) == 1 and expected in lines[0], proc.stderr
