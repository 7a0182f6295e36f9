"""export.py's phone path: float weights -> calibrated int8 file, scored on the file itself, in one command."""
import json
import os
import subprocess
import sys

import pytest

import torch_format as tf
from conftest import ROOT, write_smooth_images

pytest.importorskip("ai_edge_litert")


def _abpn_pth(path, scale=3, m=2, c=8):
    """A PyTorch ABPN-M<m>C<c> state dict (the published repository's key layout) written without torch."""
    shapes = {}

    def conv(prefix, cin, cout):
        shapes.update({f"{prefix}.weight": (cout, cin, 3, 3), f"{prefix}.bias": (cout,)})
    conv("backbone.0", 3, c)
    for i in range(m):
        conv(f"backbone.{i + 2}.0", c, c)
    conv(f"backbone.{m + 2}", c, 3 * scale * scale)
    conv(f"backbone.{m + 4}", 3 * scale * scale, 3 * scale * scale)
    tf.save_torch_format(tf.random_state_dict(shapes, seed=3, scale=0.1), str(path))


@pytest.fixture(scope="module")
def phone_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("phone")
    write_smooth_images(root / "data" / "benchmark" / "Q" / "HR", 2, 48)
    write_smooth_images(root / "calib", 3, 96, seed=1)
    _abpn_pth(root / "abpn_x3.pth")
    run = subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), "--pre_trained", str(root / "abpn_x3.pth"),
                          "--model", "abpn", "--variant", "M2C8", "--scale", "3", "--quant", "int8",
                          "--calib_path", str(root / "calib"), "--calib_num", "4", "--pac_hr_patch", "36",
                          "--pac_act_iters", "4", "--pac_weight_iters", "4", "--data_path", str(root / "data"),
                          "--eval_datasets", "Q", "--cache_dir", str(root / "cache"), "--output_path",
                          str(root / "out"), "--input_shape", "1,3,16,16", "--phone_extras", "ort"],
                         cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return root, run


def test_one_command_imports_calibrates_with_the_default_and_writes_the_files(phone_run):
    root, run = phone_run
    out = root / "out"
    assert "calibrating with dbdc_pac, the default of the phone path" in run.stdout
    for name in ("abpn_M2C8_x3_float.ckpt", "abpn_M2C8_x3_w8a8_dbdc_pac.ckpt", "abpn_M2C8_x3_w8a8_dbdc_pac_int8.tflite",
                 "abpn_M2C8_x3_w8a8_dbdc_pac_int8.ort", "abpn_M2C8_x3_w8a8_dbdc_pac_phone.json"):
        assert (out / name).is_file(), name
    assert "| int8 tflite file | " in run.stdout and "| int8 ort file | " in run.stdout


def test_the_file_rows_are_the_files_own_scores(phone_run):
    root, _ = phone_run
    summary = json.loads((root / "out" / "abpn_M2C8_x3_w8a8_dbdc_pac_phone.json").read_text())
    tflite = summary["files"][0]
    assert tflite["label"] == "int8 tflite" and tflite["file"].endswith("_int8.tflite")
    again = subprocess.run([sys.executable, os.path.join(ROOT, "eval.py"), "--pre_trained", tflite["file"],
                            "--data_path", str(root / "data"), "--eval_datasets", "Q", "--cache_dir",
                            str(root / "cache"), "--result_file", str(root / "again.json")],
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    scored = json.loads((root / "again.json").read_text())["results"]["Q"]
    assert tflite["psnr_ssim"]["Q"] == [round(scored["psnr"], 4), round(scored["ssim"], 4)]
    # the deployment model's reported PSNR is the file's (the file's window is the LR size: no padding)
    assert abs(summary["quantized"]["Q"][0] - tflite["psnr_ssim"]["Q"][0]) < 0.05
    assert tflite["latency_ms"] > 0 and tflite["xnnpack"]["partitions"] == 1
    assert tflite["input"].startswith("float32 1x16x16x3 (NHWC)") and tflite["output"].startswith("float32 1x48x48x3")


def test_quantization_options_of_a_plain_export_are_refused(tmp_path, capsys):
    from model_utils.config import get_config
    with pytest.raises(SystemExit):
        get_config(["--quant_method", "dbdc", "--file_format", "ONNX"], entry="export")
    assert "--quant_method has no effect without --quant int8" in capsys.readouterr().err


def test_a_network_without_a_mobile_form_is_refused_before_calibrating(tmp_path):
    """EDSR-baseline (mean shift, x255: Mul/Div, no delegate ops) asked for a phone file: one line naming
    --target desktop, exit 2, before any calibration (no calibrated checkpoint, no report written)."""
    from src.models.registry import create_model  # pylint: disable=import-outside-toplevel
    from src.weights.checkpoint import model_meta, save_checkpoint  # pylint: disable=import-outside-toplevel
    write_smooth_images(tmp_path / "calib", 2, 96, seed=1)
    net = create_model("edsr", "baseline", 2)
    save_checkpoint(net, str(tmp_path / "edsr.ckpt"), meta=model_meta(net))
    run = subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), "--pre_trained", str(tmp_path / "edsr.ckpt"),
                          "--quant", "int8", "--calib_path", str(tmp_path / "calib"), "--output_path",
                          str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert run.returncode == 2 and len(errors) == 1 and "--target desktop" in errors[0], run.stderr[-2000:]
    assert "Traceback" not in run.stderr and "calibrat" not in run.stdout
    assert not os.path.isdir(tmp_path / "out") or not any(name.endswith(".ckpt") for name in os.listdir(tmp_path / "out"))
