"""The user's path: checkpoints say which model they hold, and an option never silently does nothing."""
import errno
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, write_quant_run, write_smooth_images
from model_utils.config import get_config
from src.data.image_io import ImageError
from src.errors import InputNotFoundError, UserError
from src.models.registry import create_model
from src.weights.checkpoint import model_meta, save_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A float ABPN-M2C8 x3 checkpoint (written with its metadata) beside a tiny benchmark set ``Q``."""
    root = tmp_path_factory.mktemp("user_path")
    return write_quant_run(root, create_model("abpn", "M2C8", 3))


def _config(entry, *args):
    return get_config(list(args), entry=entry)


@pytest.mark.parametrize("entry,option", [("eval", "--pre_trained"), ("export", "--pre_trained"),
                                          ("infer", "--model_file"), ("train", "--pre_trained")])
def test_the_checkpoint_decides_model_variant_and_scale(ckpt, entry, option):
    config = _config(entry, option, ckpt)
    assert (config.model, config.variant, config.scale) == ("abpn", "M2C8", 3)


def test_a_given_value_that_agrees_is_kept_and_one_that_contradicts_is_refused(ckpt, capsys):
    config = _config("eval", "--pre_trained", ckpt, "--model", "abpn", "--scale", "3")
    assert (config.model, config.variant, config.scale) == ("abpn", "M2C8", 3)
    for flag, value, recorded in (("--scale", "2", "scale 3"), ("--variant", "M4C28", "variant M2C8"),
                                  ("--model", "sesr", "model abpn")):
        with pytest.raises(SystemExit) as stop:
            _config("eval", "--pre_trained", ckpt, flag, value)
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert f"{flag} {value} contradicts {ckpt}" in err and recorded in err and len(err.splitlines()) == 1


def test_a_scale_stored_as_a_float_agrees_with_the_same_whole_number(ckpt, tmp_path):
    """A checkpoint whose metadata went through float tensors (scale 3.0) is the x3 model: --scale 3 agrees
    with it (it was refused as a contradiction of 3 and 3.0)."""
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    raw = ms.load_checkpoint(ckpt)
    params = [{"name": k, "data": v} for k, v in raw.items() if k not in ("model", "variant", "scale", "form")]
    path = str(tmp_path / "float_scale.ckpt")
    ms.save_checkpoint(params, path, append_dict={"model": "abpn", "variant": "M2C8", "form": "deploy",
                                                  "scale": ms.Tensor(3.0, ms.float32)})
    config = _config("export", "--pre_trained", path, "--scale", "3")
    assert (config.model, config.variant, config.scale) == ("abpn", "M2C8", 3) and isinstance(config.scale, int)


def test_a_preset_that_names_another_model_is_a_contradiction_too(ckpt, capsys):
    with pytest.raises(SystemExit):
        _config("eval", "--config_path", os.path.join(ROOT, "configs", "sesr_M5_x2.yaml"), "--pre_trained", ckpt)
    assert "contradicts" in capsys.readouterr().err


def test_resume_takes_the_model_from_the_training_state(tmp_path):
    net = create_model("abpn", "M2C8", 4)
    progress = {"step": 7, "run": dict(model_meta(net), seed=0)}
    save_checkpoint(net, str(tmp_path / "abpn_M2C8_x4_state_00000007.ckpt"),
                    meta={"train_progress": json.dumps(progress)})
    config = _config("train", "--ckpt_dir", str(tmp_path), "--resume", "True")
    assert (config.model, config.variant, config.scale) == ("abpn", "M2C8", 4)
    save_checkpoint(net, str(tmp_path / "sesr_M5_x4_state_00000003.ckpt"), meta={"train_progress": "{}"})
    with pytest.raises(SystemExit):
        _config("train", "--ckpt_dir", str(tmp_path), "--resume", "True")


def test_eval_runs_a_checkpoint_without_model_flags(ckpt):
    root = os.path.dirname(ckpt)
    run = subprocess.run([sys.executable, os.path.join(ROOT, "eval.py"), "--pre_trained", ckpt, "--data_path",
                          os.path.join(root, "data"), "--eval_datasets", "Q", "--cache_dir", os.path.join(root, "cache"),
                          "--result_file", os.path.join(root, "r.json")], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "abpn-M2C8 x3" in run.stdout
    assert json.load(open(os.path.join(root, "r.json"), encoding="utf-8"))["scale"] == 3


@pytest.mark.parametrize("entry,args,named", [
    ("eval", ["--w_bit", "8", "--a_bit", "8", "--save_quant_ckpt", "q.ckpt"], "--w_bit, --a_bit, --save_quant_ckpt"),
    ("eval", ["--calib_num", "8"], "--calib_num"),
    ("eval", ["--quant_method", "dbdc", "--pac_loss", "l1"], "--pac_loss"),
    ("eval", ["--quant_method", "dbdc_pac", "--recon_iters", "5"], "--recon_iters"),
    ("eval", ["--quant_method", "minmax", "--percentile", "0.99"], "--percentile"),
    ("train", ["--w_bit", "4"], "--w_bit"),
    ("train", ["--lr_scheduler", "cosine", "--lr_milestones", "10,20"], "--lr_milestones"),
    ("train", ["--lr_scheduler", "multistep", "--min_lr", "1e-6"], "--min_lr"),
    ("train", ["--loss_scale", "none", "--loss_scale_value", "1024"], "--loss_scale_value"),
    ("export", ["--file_format", "ONNX", "--calib_path", "x"], "--calib_path"),
    # the phone path's default method is dbdc_pac: reconstruction or percentile options would be ignored
    ("export", ["--quant", "int8", "--recon_iters", "3"], "--recon_iters"),
    ("export", ["--quant", "int8", "--percentile", "0.99"], "--percentile"),
])
def test_an_option_that_would_do_nothing_is_refused(entry, args, named, capsys):
    with pytest.raises(SystemExit) as stop:
        _config(entry, *args)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {named} ") and "no effect without" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("entry,args", [
    ("eval", ["--quant_method", "dbdc_pac", "--w_bit", "4", "--pac_loss", "l1", "--save_quant_ckpt", "q.ckpt"]),
    ("eval", ["--quant_method", "dbdc_recon", "--recon_iters", "5", "--pac_batch", "2"]),
    ("export", ["--quant", "int8", "--quant_method", "dbdc_recon", "--recon_iters", "3", "--pac_loss", "l1"]),
    ("export", ["--quant", "int8", "--pac_loss", "l1"]),
    ("train", ["--qat", "True", "--w_bit", "4"]),
    ("train", ["--lr_scheduler", "multistep", "--lr_milestones", "10,20"]),
])
def test_the_same_options_with_what_they_need_are_taken(entry, args):
    _config(entry, *args)


# ---- never lose a result ---------------------------------------------------------------------------------------

def _write(path, text):
    from src.utils.atomic import atomic_target
    with atomic_target(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)


def test_a_replaced_result_is_kept_beside_the_new_one(tmp_path):
    from src.utils.atomic import keeping_results
    report = tmp_path / "r.json"
    _write(report, "first")
    lines = []
    with keeping_results(lines.append):
        _write(report, "first")  # same bytes: nothing to keep
        _write(report, "second")
    kept = sorted(p.name for p in tmp_path.glob("r_archived_*.json"))
    assert len(kept) == 1 and (tmp_path / kept[0]).read_text() == "first" and report.read_text() == "second"
    assert len(lines) == 1 and "kept 1 earlier result file" in lines[0] and kept[0] in lines[0]
    with keeping_results(lines.append):
        _write(report, "third")
    assert len(list(tmp_path.glob("r_archived_*.json"))) == 2  # a second archive of the same second gets _2


def test_a_failed_write_replaces_nothing(tmp_path):
    from src.utils.atomic import atomic_target, keeping_results
    report = tmp_path / "r.json"
    _write(report, "good")
    with pytest.raises(RuntimeError), keeping_results():
        with atomic_target(str(report)) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            fh.write("half")
            raise RuntimeError("the run failed while writing")
    assert report.read_text() == "good" and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_eval_rerun_keeps_the_earlier_report_and_a_failing_run_keeps_it_too(ckpt):
    root = os.path.dirname(ckpt)
    report = os.path.join(root, "keep", "r.json")
    base = [sys.executable, os.path.join(ROOT, "eval.py"), "--pre_trained", ckpt, "--data_path",
            os.path.join(root, "data"), "--cache_dir", os.path.join(root, "cache"), "--result_file", report]
    first = subprocess.run(base + ["--eval_datasets", "Q"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    good = open(report, encoding="utf-8").read()
    failed = subprocess.run(base + ["--eval_datasets", "Q,Missing"], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert failed.returncode == 2 and open(report, encoding="utf-8").read() == good
    again = subprocess.run(base + ["--eval_datasets", "Q", "--gt_mod", "6"], cwd=ROOT, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    kept = [f for f in os.listdir(os.path.dirname(report)) if f.startswith("r_archived_")]
    assert len(kept) == 1 and open(os.path.join(os.path.dirname(report), kept[0]), encoding="utf-8").read() == good
    assert "kept 1 earlier result file(s)" in again.stdout
    # a set that fails during the run (an image too small for SSIM): its report goes beside, not over r.json
    newest = open(report, encoding="utf-8").read()
    write_smooth_images(os.path.join(root, "data", "benchmark", "Tiny", "HR"), 1, 12)
    broken = subprocess.run(base + ["--eval_datasets", "Q,Tiny"], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert broken.returncode == 2 and "too small" in broken.stderr
    assert open(report, encoding="utf-8").read() == newest
    failed = json.load(open(report[:-len(".json")] + "_failed.json", encoding="utf-8"))
    assert list(failed["results"]) == ["Q"] and list(failed["failed"]) == ["Tiny"]


# ---- progress and warnings ---------------------------------------------------------------------------------------

def test_progress_lines_carry_an_eta_and_a_long_phase_is_never_silent(monkeypatch):
    from src.utils import progress as progress_module
    clock = [0.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: clock[0])
    lines = []
    bar = progress_module.ProgressLog("reconstruction block a..b", 100, lines.append, every_s=10.0)
    for step in range(1, 101):
        clock[0] += 1.0  # one second per step
        bar.update(step, "relative error 0.1")
    assert len(lines) == 10  # one line per 10 s, the last at the end
    assert lines[0] == "reconstruction block a..b: 10/100 (10%), 10 s, ETA 1.5 min, relative error 0.1"
    assert lines[-1] == "reconstruction block a..b: 100/100 (100%), 1.7 min, relative error 0.1"  # no ETA at the end


def test_a_tflite_file_split_into_several_xnnpack_partitions_is_warned_about():
    from src.runtime.tflite_check import partition_warning
    assert partition_warning({"partitions": 1, "nodes": 14, "delegated": 14, "left": []}) == ""
    line = partition_warning({"partitions": 6, "nodes": 30, "delegated": 25,
                              "left": ["PRELU", "MAXIMUM", "PRELU", "MINIMUM", "MAXIMUM"]})
    assert line.startswith("warning: XNNPACK splits this file into 6 partitions; 5 node(s)")
    assert "MAXIMUM, MINIMUM, PRELU" in line


# ---- ModelArts -------------------------------------------------------------------------------------------------

_MOXING = '''
import os, shutil


class file:  # noqa: N801  (the stand-in of moxing.file: copies between local folders)
    @staticmethod
    def copy_parallel(src, dst):
        shutil.copytree(src, dst, dirs_exist_ok=True)

    @staticmethod
    def copy(src, dst):
        shutil.copy(src, dst)
'''


def test_enable_modelarts_copies_data_and_checkpoint_in_and_outputs_out(ckpt, tmp_path):
    root = os.path.dirname(ckpt)
    obs = tmp_path / "obs"
    shutil_tree = __import__("shutil")
    shutil_tree.copytree(os.path.join(root, "data"), obs / "data")
    shutil_tree.copy(ckpt, obs / "model.ckpt")
    stand_in = tmp_path / "site"
    (stand_in / "moxing").mkdir(parents=True)
    (stand_in / "moxing" / "__init__.py").write_text(_MOXING)
    local = tmp_path / "cache"
    args = [sys.executable, os.path.join(ROOT, "eval.py"), "--enable_modelarts", "True",
            "--data_url", str(obs / "data"), "--data_path", str(local / "data"), "--eval_datasets", "Q",
            "--checkpoint_url", str(obs / "model.ckpt"), "--pre_trained", str(local / "ckpt" / "model.ckpt"),
            "--model", "abpn", "--variant", "M2C8", "--scale", "3",
            "--train_url", str(obs / "out"), "--output_path", str(local / "outputs"),
            "--cache_dir", str(local / "lr_cache")]
    env = dict(os.environ, PYTHONPATH=str(stand_in) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (local / "data" / "benchmark" / "Q" / "HR").is_dir() and (local / "ckpt" / "model.ckpt").is_file()
    report = obs / "out" / "outputs" / "eval_abpn_M2C8_x3.json"
    assert report.is_file() and json.loads(report.read_text())["scale"] == 3
    without = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert without.returncode == 2 and "moxing" in without.stderr and len(without.stderr.strip().splitlines()) == 1


def test_a_defect_shows_its_traceback_and_says_it_is_a_bug(capsys):
    from model_utils.entry import run_entry

    def engine():
        def run(_config):
            raise KeyError("an internal table lacks an entry")  # no user input makes this: a defect
        return run
    assert run_entry([], "eval", "test", engine) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "KeyError" in err
    assert err.strip().splitlines()[-1].startswith("this is a bug in eval.py, not a problem with your input")

    def user_error():
        def run(_config):
            raise InputNotFoundError("calibration folder not found: /x (set --calib_path to a folder of images)")
        return run
    assert run_entry([], "eval", "test", user_error) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip() == ("error: calibration folder not found: /x (set --calib_path to "
                                                      "a folder of images)")


@pytest.mark.parametrize("exc", [ValueError("math domain error"), OSError("a bare OSError, no errno"),
                                 TypeError("unsupported operand")])
def test_a_value_or_os_error_that_no_check_raised_is_a_bug_not_a_user_error(capsys, exc):
    """Only deliberate judgements (UserError) and the system's errors about a file (OSError with errno) are
    one line; a ValueError from a bug (e.g. math.log(-1) deep in the code) shows its traceback."""
    from model_utils.entry import run_entry

    def engine():
        def run(_config):
            raise exc
        return run
    assert run_entry([], "eval", "test", engine) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "this is a bug in eval.py" in err


def test_user_errors_and_the_systems_file_errors_are_one_line(capsys, tmp_path):
    from model_utils.entry import run_entry

    def engine_raising(exc):
        def engine():
            def run(_config):
                raise exc
            return run
        return engine
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "r.json"))
    for exc, words in ((UserError("--box 1,2 lies outside the image; give a box inside it"), "--box 1,2"),
                       (full, "the disk is full"), (ImageError("x.png: truncated PNG"), "truncated PNG")):
        assert run_entry([], "eval", "test", engine_raising(exc)) == 2
        err = capsys.readouterr().err.strip()
        assert "Traceback" not in err and len(err.splitlines()) == 1 and words in err, err


def test_every_error_class_of_the_project_is_a_user_error():
    """The classes raised where input is judged derive from UserError (the entry scripts' one-line class)."""
    from model_utils.outputs import OutputPathError
    from model_utils.validate import ConfigError
    from src.data.eval_sets import DatasetNotFoundError
    from src.export.deploy_sites import DeployUnsupported
    from src.runtime.metadata import ExportedModelError, MissingRuntimeError
    from src.utils.atomic import SameFileError
    from src.utils.run_lock import FolderBusy
    from src.weights.checkpoint import CheckpointError
    from src.weights.torch_pickle import TorchFileError, UnsafeCheckpointError
    for cls in (OutputPathError, ConfigError, DatasetNotFoundError, DeployUnsupported, ExportedModelError,
                MissingRuntimeError, SameFileError, FolderBusy, CheckpointError, TorchFileError, UnsafeCheckpointError,
                ImageError, InputNotFoundError):
        assert issubclass(cls, UserError), cls
    assert issubclass(InputNotFoundError, FileNotFoundError) and issubclass(UserError, ValueError)
