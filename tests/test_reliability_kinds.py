"""Kinds of faults found on the recent features (results from the wrong run, bombs, shared run folders,
files replaced before their check, impossible shapes, skipped inputs, unchecked metadata, unhelpful
errors): one test per kind with the example's right behaviour."""
import os

import pytest

from src.models.registry import create_model
from src.weights.checkpoint import model_meta, save_checkpoint


@pytest.fixture(scope="module")
def float_ckpt(tmp_path_factory):
    net = create_model("abpn", "M2C8", 3)
    path = str(tmp_path_factory.mktemp("ck") / "abpn.ckpt")
    save_checkpoint(net, path, meta=model_meta(net))
    return path


def _export(ckpt, out, fmt, *extra):
    from model_utils.config import get_config  # pylint: disable=import-outside-toplevel
    from src.export.exporter import run_export  # pylint: disable=import-outside-toplevel
    config = get_config(["--model", "abpn", "--variant", "M2C8", "--scale", "3", "--pre_trained", ckpt,
                         "--file_format", fmt, "--input_shape", "1,3,16,16", "--export_file", out, *extra])
    return run_export(config, log=lambda *_: None)


@pytest.mark.parametrize("fmt,ext", [("ONNX", "onnx"), ("MINDIR", "mindir")])
def test_a_file_that_fails_its_check_never_replaces_the_earlier_one(float_ckpt, tmp_path, monkeypatch, fmt, ext):
    """Kind 4: the writer checks the temporary file and only then replaces the target."""
    from src.export import exporter  # pylint: disable=import-outside-toplevel
    target = str(tmp_path / f"m.{ext}")
    _export(float_ckpt, target, fmt)
    before = open(target, "rb").read()
    monkeypatch.setattr(exporter, "FLOAT_TOLERANCE", 0.0)  # every check now fails
    with pytest.raises(ValueError, match="differs from MindSpore"):
        _export(float_ckpt, target, fmt)
    assert open(target, "rb").read() == before
    assert sorted(os.listdir(tmp_path)) == [f"m.{ext}"]  # no temporary file left behind


def test_scopes_that_leave_every_layer_float_are_named_as_such():
    """Kind 8: --fp_scope '*' said 'min() arg is an empty sequence' / 'matches no layer' (it matched all)."""
    from src.quantlib.quant_layers import QuantConfig, quantize_model  # pylint: disable=import-outside-toplevel
    net = create_model("abpn", "M2C8", 3)
    with pytest.raises(ValueError, match=r"fp_scope '\*' leaves all 5 layers in floating point"):
        quantize_model(net, QuantConfig(8, 8, fp_scope=["*"]))


@pytest.fixture(scope="module")
def w8a8_ckpt(tmp_path_factory):
    """A W8A8 minmax-calibrated ABPN-M2C8 x3 checkpoint (PTQ4SR placement)."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    from src.quantlib.calibrate import calibrate  # pylint: disable=import-outside-toplevel
    from src.quantlib.quant_layers import QuantConfig  # pylint: disable=import-outside-toplevel
    q = create_model("abpn", "M2C8", 3)
    rng = np.random.default_rng(0)
    calibrate(q, [rng.random((2, 3, 16, 16)).astype(np.float32) for _ in range(2)], "minmax", QuantConfig(8, 8))
    path = str(tmp_path_factory.mktemp("q") / "w8a8.ckpt")
    save_checkpoint(q, path, meta=dict(model_meta(q), quant_config=QuantConfig(8, 8).to_json(), quant_method="minmax"))
    return path


@pytest.mark.parametrize("extra,words", [
    (["--quant_method", "dbdc", "--w_bit", "4", "--a_bit", "4"], "is already calibrated (minmax W8A8), so "
                                                                   "--quant_method dbdc --w_bit 4 --a_bit 4 cannot"),
    (["--quant_method", "minmax", "--w_bit", "8", "--a_bit", "8", "--save_quant_ckpt", "again.ckpt"],
     "--save_quant_ckpt would write nothing"),
])
def test_a_calibrated_checkpoint_is_not_reported_under_another_label(w8a8_ckpt, tmp_path, extra, words):
    """Kind 1: eval.py with a W8A8 checkpoint and W4A4 options reported W8A8 with exit 0, and
    --save_quant_ckpt wrote nothing, silently."""
    from model_utils.config import get_config  # pylint: disable=import-outside-toplevel
    from src.engine.evaluate import run_evaluation  # pylint: disable=import-outside-toplevel
    config = get_config(["--model", "abpn", "--variant", "M2C8", "--scale", "3", "--pre_trained", w8a8_ckpt,
                         "--eval_datasets", "Samples", "--output_path", str(tmp_path), *extra])
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        run_evaluation(config, log=lambda *_: None)
    assert not os.path.exists(tmp_path / "again.ckpt")


def test_a_sweep_reuses_only_a_result_of_the_same_run(tmp_path):
    """Kind 1: --reuse True took an earlier run's rows when only the method and bits matched (another
    --pre_trained got the first checkpoint's PSNR); now only a run with the same recorded identity."""
    import subprocess  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel
    from conftest import ROOT, write_smooth_images  # pylint: disable=import-outside-toplevel
    data = tmp_path / "data" / "benchmark" / "Tiny" / "HR"
    write_smooth_images(str(data), 2, 48)
    write_smooth_images(str(tmp_path / "calib"), 2, 200, seed=3)
    ckpts = []
    for seed in (0, 1):
        import mindspore as ms  # pylint: disable=import-outside-toplevel
        ms.set_seed(seed)
        net = create_model("abpn", "M2C8", 3)
        ckpts.append(str(tmp_path / f"abpn_{seed}.ckpt"))
        save_checkpoint(net, ckpts[-1], meta=model_meta(net))

    def sweep(ckpt):
        proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "ptq_sweep.py"), "--methods", "minmax",
                               "--bits", "8", "--reuse", "True", "--model", "abpn", "--variant", "M2C8", "--scale",
                               "3", "--pre_trained", ckpt, "--data_path", str(tmp_path / "data"), "--eval_datasets",
                               "Tiny", "--calib_path", str(tmp_path / "calib"), "--calib_num", "4",
                               "--output_path", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True,
                              check=False)
        assert proc.returncode == 0, proc.stderr[-1500:]
        return next(line for line in proc.stdout.splitlines() if line.startswith("W8A8 minmax"))

    first, again, other = sweep(ckpts[0]), sweep(ckpts[0]), sweep(ckpts[1])
    assert "reused" not in first and "reused" in again and again.split("(")[0] == first.split("(")[0]
    assert "reused" not in other


def test_a_name_too_long_for_the_file_system_is_refused_before_any_work(tmp_path):
    """Kind 8: a 300-character folder name ended in 'File name too long' printed on the progress bar's line."""
    import subprocess  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel
    from conftest import ROOT  # pylint: disable=import-outside-toplevel
    long_name = str(tmp_path / ("d" * 300))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "eval.py"), "--eval_datasets", "Samples",
                           "--output_path", long_name, "--save_sr", "True"], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "is 300 bytes long" in lines[0], proc.stderr[-800:]
    assert "--output_path" in lines[0] and "evaluating" not in proc.stdout


def test_symlinked_sub_folders_are_read_and_loops_end(tmp_path):
    """Kind 6: a symlinked sub-folder of --train_path was skipped ('training on 1 images' with 3 behind it)."""
    from conftest import write_smooth_images  # pylint: disable=import-outside-toplevel
    from src.data.image_io import list_images  # pylint: disable=import-outside-toplevel
    root, elsewhere = tmp_path / "train", tmp_path / "elsewhere"
    write_smooth_images(str(root), 1, 16)
    write_smooth_images(str(elsewhere), 3, 16, seed=2)
    os.symlink(elsewhere, root / "linked")
    os.symlink(root, elsewhere / "back_to_train")  # a loop through both folders
    found = list_images(str(root), recursive=True)
    assert len(found) == 4 and sum(f"{os.sep}linked{os.sep}" in p for p in found) == 3


def test_an_option_this_entry_point_does_not_read_is_named(tmp_path, capsys):
    """Kind 6: infer.py accepted and ignored quantization options without a word."""
    from model_utils.config import get_config  # pylint: disable=import-outside-toplevel
    get_config(["--input_path", str(tmp_path), "--w_bit", "4", "--quant_method", "dbdc"], entry="infer")
    out = capsys.readouterr().out
    assert "note: --quant_method, --w_bit have no effect in infer.py (read by eval.py, export.py, train.py); ignored" in out
    get_config(["--input_path", str(tmp_path), "--tile_size", "64"], entry="infer")
    assert "no effect" not in capsys.readouterr().out


def test_a_run_folder_has_one_writer_and_a_stale_lock_is_taken_over(tmp_path):
    """Kind 3: two train.py runs into one --ckpt_dir both exited 0 with interleaved CSV rows."""
    import json  # pylint: disable=import-outside-toplevel
    import subprocess  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel
    from conftest import ROOT, write_smooth_images  # pylint: disable=import-outside-toplevel
    from src.utils.run_lock import LOCK_NAME, FolderBusy, hold_folder  # pylint: disable=import-outside-toplevel
    folder = tmp_path / "ck"
    folder.mkdir()
    notes = []
    with hold_folder(str(folder), log=notes.append):
        lock = json.loads((folder / LOCK_NAME).read_text())
        assert lock["pid"] == os.getpid()
        # a second holder (another process) is refused while this one holds the folder
        other = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                                "from src.utils.run_lock import hold_folder\nwith hold_folder(sys.argv[2]): pass",
                                ROOT, str(folder)], capture_output=True, text=True, check=False)
        assert other.returncode != 0 and "is in use by another run" in other.stderr
    assert not (folder / LOCK_NAME).exists() and notes == []  # released: removed
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    (folder / LOCK_NAME).write_text(json.dumps({"pid": int(gone.stdout), "host": os.uname().nodename}))
    with hold_folder(str(folder), log=notes.append):
        pass
    assert len(notes) == 1 and "was left by a run that is gone" in notes[0]
    # train.py refuses a folder a live run holds, in one line, before writing anything
    (folder / LOCK_NAME).write_text(json.dumps({"pid": os.getppid(), "host": os.uname().nodename}))
    write_smooth_images(tmp_path / "train", 4, 48)
    write_smooth_images(tmp_path / "data" / "benchmark" / "Val" / "HR", 1, 48, seed=9)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--model", "abpn", "--variant", "M2C8",
                           "--scale", "2", "--train_path", str(tmp_path / "train"), "--val_data_path",
                           str(tmp_path / "data"), "--val_datasets", "Val", "--patch_size", "8", "--batch_size", "2",
                           "--cache_dir", str(tmp_path / "cache"), "--total_steps", "2", "--ckpt_dir", str(folder)],
                          cwd=ROOT, capture_output=True, text=True, check=False, timeout=600)
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "WARNING" not in line]
    assert proc.returncode == 2 and len(lines) == 1 and "is in use by another run" in lines[0], proc.stderr[-800:]
    assert sorted(os.listdir(folder)) == [LOCK_NAME]  # nothing written
    with pytest.raises(FolderBusy, match=f"pid {os.getppid()}"):
        with hold_folder(str(folder)):
            pass


def test_yaml_aliases_are_refused_in_one_short_line(tmp_path):
    """Kind 2: a 506-byte preset of nested aliases took more than 6 GiB; a 350-byte one gave a 3.6 MB 'line'."""
    import subprocess  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel
    from conftest import ROOT  # pylint: disable=import-outside-toplevel
    levels = ["  a: &a [8, 8, 8, 8, 8, 8, 8, 8, 8, 8]"] + [  # every alias inside bit_table, a key the config has
        f"  {chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]" for i in range(8)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("_base_: " + os.path.join(ROOT, "DIV2K_config.yaml") + "\n" + "bit_table:\n" + "\n".join(levels) + "\n")
    assert bomb.stat().st_size < 700
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "eval.py"), "--config_path", str(bomb)], cwd=ROOT,
                          capture_output=True, text=True, check=False, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "is not read (aliases can expand" in lines[0], proc.stderr
    assert len(lines[0]) < 800


def test_inference_memory_is_checked_up_front_and_windows_are_bounded(tmp_path, monkeypatch):
    """Kind 2: an image whose output cannot fit is refused before any work, naming the sizes; a file declaring
    a 40000x40000 window (every image padded to it) is refused; alpha is upscaled in regions exactly."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    from conftest import write_smooth_images  # pylint: disable=import-outside-toplevel
    from onnx_files import save_huge_window_onnx  # pylint: disable=import-outside-toplevel
    from src.data.image_io import ImageError  # pylint: disable=import-outside-toplevel
    from src.data.imresize import imresize  # pylint: disable=import-outside-toplevel
    from src.engine import upscale_images  # pylint: disable=import-outside-toplevel
    from src.runtime.metadata import ExportedModelError  # pylint: disable=import-outside-toplevel
    from src.runtime.runners import open_exported  # pylint: disable=import-outside-toplevel
    write_smooth_images(str(tmp_path / "in"), 1, 64)
    monkeypatch.setattr(upscale_images, "_available_bytes", lambda: 100_000)  # 64x64 x3 RGBA: 147 kB
    with pytest.raises(ImageError, match=r"\(64x64\) upscaled x3 is 192x192 pixels: .* GiB is available"):
        upscale_images.check_output_memory([str(tmp_path / "in" / "0.png")], 3, lambda _: 0)
    # a window no machine should be asked for
    big = save_huge_window_onnx(str(tmp_path / "big.onnx"))
    with pytest.raises(ExportedModelError, match="one window needs 89.4 GiB"):
        open_exported(big, log=lambda _: None)
    alpha = (np.random.default_rng(0).random((1100, 700)) * 255).astype(np.uint8)
    whole = np.floor(np.clip(imresize(alpha.astype(np.float64) / 255.0, 2.0), 0, 1) * 255 + 0.5).astype(np.uint8)
    assert np.array_equal(upscale_images.upscale_alpha(alpha, 2), whole)


def test_a_fixed_window_file_runs_region_by_region_exactly(float_ckpt, tmp_path):
    """Kind 2: images through a fixed-window file go region by region (one window each, moved back at the
    far edges as the file's windows are), into the uint8 output: the pixels of the whole-image run."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    from src.data.transforms import tensor_to_uint8, uint8_to_tensor  # pylint: disable=import-outside-toplevel
    from src.engine.inference import SRPredictor  # pylint: disable=import-outside-toplevel
    from src.runtime.runners import open_exported  # pylint: disable=import-outside-toplevel
    path = str(tmp_path / "m.onnx")
    _export(float_ckpt, path, "ONNX", "--target", "mobile", "--input_shape", "1,3,20,28")
    runner = open_exported(path, log=lambda _: None)
    lr = (np.random.default_rng(5).random((53, 71, 3)) * 255).astype(np.uint8)
    whole = tensor_to_uint8(runner.run(uint8_to_tensor(lr)))
    predictor = SRPredictor.configured(runner, 3, type("Inference", (), dict(
        tile_size=0, tile_overlap=-1, self_ensemble=False, max_tile_mem_gb=6.0))())
    assert predictor._region_hw(53, 71) == (20, 28)  # pylint: disable=protected-access
    tiled = predictor.predict(lr)
    assert tiled.shape == whole.shape and int(np.abs(tiled.astype(int) - whole.astype(int)).max()) <= 1
    assert (tiled != whole).mean() < 1e-3


def test_a_large_png_is_written_without_a_second_copy_and_its_array_is_left_as_it_was(tmp_path, monkeypatch):
    """Kind 2: the RGB->BGR copy for OpenCV doubled a 1.6 GiB output; large arrays are swapped in place."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    from src.data import image_io  # pylint: disable=import-outside-toplevel
    monkeypatch.setattr(image_io, "_IN_PLACE_BYTES", 100)
    for channels in (3, 4):
        image = (np.random.default_rng(channels).random((1100, 37, channels)) * 255).astype(np.uint8)
        before = image.copy()
        image_io.write_png(str(tmp_path / f"{channels}.png"), image)
        assert np.array_equal(image, before)
        rgb, alpha = image_io.read_image(str(tmp_path / f"{channels}.png"))
        assert np.array_equal(rgb, before[:, :, :3]) and (alpha is None) == (channels == 3)
