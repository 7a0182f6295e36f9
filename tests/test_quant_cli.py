"""eval.py with --quant_method, calibrated checkpoints, and train.py --qat, end to end on tiny data."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, write_quant_run
from model_utils.config import get_config
from src.engine.trainer import train
from src.models import create_model
from src.weights.checkpoint import read_checkpoint


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("quant")
    return root, write_quant_run(root, create_model("abpn", "M2C8", 2))


def _args(root, ckpt, *extra):
    """eval.py / train.py options; the calibration ones only where something calibrates (else refused)."""
    calibrates = any(flag in extra for flag in ("--quant_method", "--qat", "--methods"))
    return ["--model", "abpn", "--variant", "M2C8", "--scale", "2", "--pre_trained", ckpt,
            "--data_path", str(root / "data"), "--eval_datasets", "Q", "--cache_dir", str(root / "cache"),
            "--output_path", str(root / "out"), *extra] + (
        ["--calib_path", str(root / "calib"), "--calib_num", "4", "--pac_hr_patch", "32"] if calibrates else [])


def run_eval(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "eval.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)


def test_calibrate_evaluate_save_and_reload(setup):
    root, ckpt = setup
    qckpt = str(root / "q.ckpt")
    proc = run_eval(*_args(root, ckpt, "--quant_method", "dbdc_pac", "--w_bit", "4", "--a_bit", "4",
                           "--pac_act_iters", "3", "--pac_weight_iters", "2", "--save_quant_ckpt", qckpt,
                           "--result_file", str(root / "a.json")))
    assert proc.returncode == 0, proc.stderr
    first = json.loads((root / "a.json").read_text())
    assert first["quant"]["method"] == "dbdc_pac" and not first["quant"]["from_checkpoint"]
    assert set(first["results_fp"]) == set(first["results"]) == {"Q"}
    assert "W4A4 dbdc_pac" in proc.stdout and "drop (dB)" in proc.stdout
    _, meta = read_checkpoint(qckpt)
    assert json.loads(meta["quant_config"])["w_bit"] == 4 and meta["quant_method"] == "dbdc_pac"
    again = run_eval(*_args(root, qckpt, "--result_file", str(root / "b.json")))
    assert again.returncode == 0, again.stderr
    second = json.loads((root / "b.json").read_text())
    assert second["quant"]["from_checkpoint"] and "calibrated" not in again.stdout
    assert second["results"]["Q"]["psnr"] == pytest.approx(first["results"]["Q"]["psnr"], abs=1e-9)
    assert second["results_fp"]["Q"]["psnr"] == pytest.approx(first["results_fp"]["Q"]["psnr"], abs=1e-9)


def test_equalize_keeps_the_float_row_and_the_saved_model_reloads(setup):
    root, ckpt = setup
    plain = run_eval(*_args(root, ckpt, "--quant_method", "minmax", "--result_file", str(root / "p.json")))
    qckpt = str(root / "eq.ckpt")
    proc = run_eval(*_args(root, ckpt, "--quant_method", "minmax", "--equalize", "True", "--save_quant_ckpt", qckpt,
                           "--result_file", str(root / "e.json")))
    assert plain.returncode == 0 and proc.returncode == 0, plain.stderr + proc.stderr
    assert "equalised the activation ranges of 4 conv pairs" in proc.stdout
    eq, base = json.loads((root / "e.json").read_text()), json.loads((root / "p.json").read_text())
    assert eq["results_fp"]["Q"]["psnr"] == pytest.approx(base["results_fp"]["Q"]["psnr"], abs=1e-3)
    again = run_eval(*_args(root, qckpt, "--result_file", str(root / "e2.json")))
    assert again.returncode == 0, again.stderr
    reloaded = json.loads((root / "e2.json").read_text())
    assert reloaded["results"]["Q"]["psnr"] == pytest.approx(eq["results"]["Q"]["psnr"], abs=1e-9)


@pytest.mark.parametrize("extra,expected", [
    (["--quant_method", "dbdc", "--w_bit", "9"], "w_bit must be between 2 and 8"),
    (["--quant_method", "kmeans"], "--quant_method 'kmeans' is not one of"),
    (["--quant_method", "minmax", "--w_bit", "4", "--fp_scope", "tail*"], "fp_scope pattern 'tail*' matches no layer"),
])
def test_bad_quant_config_one_line_error(setup, extra, expected):
    root, ckpt = setup
    proc = run_eval(*_args(root, ckpt, *extra))
    assert proc.returncode == 2
    lines = [l for l in proc.stderr.splitlines() if l.strip() and "WARNING" not in l and not l.startswith(" ")
             and "usage:" not in l]
    assert len(lines) == 1 and expected in lines[0], proc.stderr


@pytest.mark.parametrize("bits", [4, 8])
def test_qat_trains_and_saves_a_quantized_checkpoint(setup, tmp_path, bits):
    """W4A4: PTQ4SR's placement; W8A8: the deployment model (the int8 file's roundings) is what QAT trains."""
    root, ckpt = setup
    cfg = get_config(["--model", "abpn", "--variant", "M2C8", "--scale", "2", "--qat", "True", "--pre_trained", ckpt,
                      "--quant_method", "minmax", "--w_bit", str(bits), "--a_bit", str(bits),
                      "--train_path", str(root / "calib"),
                      "--calib_path", str(root / "calib"), "--calib_num", "4", "--pac_hr_patch", "32",
                      "--val_data_path", str(root / "data"), "--val_datasets", "Q", "--patch_size", "16",
                      "--batch_size", "2", "--total_steps", "3", "--val_every", "3", "--lr", "0.001",
                      "--ckpt_dir", str(tmp_path), "--cache_dir", str(tmp_path / "c")])
    lines = []
    train(cfg, log=lines.append)
    assert any(l.startswith(f"QAT initialised by minmax calibration, W{bits}A{bits}") for l in lines)
    out = str(tmp_path / "abpn_M2C8_x2_qat_last.ckpt")
    params, meta = read_checkpoint(out)
    assert meta["quant_method"] == "qat" and "conv_up.act_quant.upper" in params
    placement = json.loads(meta["quant_config"])["placement"]
    assert placement == ("deploy" if bits == 8 else "ptq4sr")
    assert ("conv_last.out_quant.lower" in params) == (bits == 8)  # the residual's grid, learned by QAT
    start, _ = read_checkpoint(ckpt)
    assert not np.array_equal(params["body.0.weight"], start["body.0.weight"])  # weights were trained
    proc = run_eval(*_args(root, out, "--result_file", str(tmp_path / "r.json")))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["quant"]["method"] == "qat" and report["quant"]["placement"] == placement


def test_ptq_sweep_writes_table_json_and_plot(setup, tmp_path):
    root, ckpt = setup
    args = _args(root, ckpt, "--methods", "minmax,dbdc", "--bits", "8,4")
    args[args.index("--output_path") + 1] = str(tmp_path)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "ptq_sweep.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    stem = tmp_path / "ptq_sweep_abpn_M2C8_x2"
    table = (stem.with_suffix(".md")).read_text()
    assert "| minmax | W8A8 |" in table and "| dbdc | W4A4 |" in table
    rows = json.loads(stem.with_suffix(".json").read_text())["rows"]
    assert [(r["method"], r["bits"]) for r in rows] == [("minmax", 8), ("dbdc", 8), ("minmax", 4), ("dbdc", 4)]
    assert stem.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # --reuse True: every run's result file is there, so nothing is measured again and the rows are the same
    again = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "ptq_sweep.py"), *args, "--reuse", "True"],
                           capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert again.returncode == 0, again.stderr
    assert json.loads(stem.with_suffix(".json").read_text())["rows"] == rows
    assert again.stdout.count(", reused)") == 4
    # one zoo table from the sweep files
    zoo = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "ptq_zoo_table.py"), str(stem.with_suffix(".json")),
                          "--out", str(tmp_path / "zoo.md")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert zoo.returncode == 0, zoo.stderr
    best4 = max(r["psnr"]["Q"] for r in rows if r["bits"] == 4)
    assert f"**{best4:.2f} (" in (tmp_path / "zoo.md").read_text() and "| abpn_M2C8_x2 | W4A4 | dbdc |" in zoo.stdout


def test_zoo_table_marks_the_best_method_and_the_change_against_float():
    from src.engine.ptq_tables import zoo_markdown  # pylint: disable=import-outside-toplevel
    sweep = {"fp": {"Set5": 33.5, "Set14": 29.8},
             "rows": [{"method": "dbdc", "bits": 4, "psnr": {"Set5": 30.0, "Set14": 27.0}, "seconds": 5.0},
                      {"method": "dbdc_recon", "bits": 4, "psnr": {"Set5": 32.25, "Set14": 29.0}, "seconds": 150.0}]}
    table = zoo_markdown([("m", sweep)])
    assert "| m | W4A4 | dbdc_recon | **32.25 (-1.25)** | 29.00 (-0.80) | 150.0 |" in table
    assert "| m | W4A4 | dbdc | 30.00 (-3.50) | 27.00 (-2.80) | 5.0 |" in table
