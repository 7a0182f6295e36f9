"""Every bad configuration value, config file, output path or device gets one line and exit code 2.

Issue 13, items 18, 19 and the config part of 15. Entry points are called in-process
(``eval.main(argv)`` etc.) with tiny data so each case costs seconds.
"""
import errno
import json
import os
import re

import numpy as np
import pytest

from conftest import ROOT, write_smooth_images
from model_utils.config import DEFAULT_CONFIG, get_config, load_yaml
from model_utils.outputs import OutputPathError, check_output_file, check_output_folder
from model_utils.validate import MODEL_FAMILIES, RULES, ConfigError, validate
from src.errors import error_line
from src.models import create_model
from src.weights.checkpoint import model_meta, save_checkpoint

import eval as eval_entry  # noqa: E402  (the entry scripts at the project root)
import export as export_entry  # noqa: E402
import infer as infer_entry  # noqa: E402
import train as train_entry  # noqa: E402


def _code(fn, *args):
    """Exit code of an entry ``main`` (returned, or raised as SystemExit)."""
    try:
        return fn(*args)
    except SystemExit as exc:
        return exc.code


def _lines(text):
    return [line for line in text.splitlines() if line.strip()]


def _error_lines(text):
    return [line for line in _lines(text) if line.startswith("error:")]


def _one_error(capsys):
    """The single ``error:`` line on stderr; no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    errors = _error_lines(err)
    assert len(errors) == 1, err
    return errors[0]


# ---- the rule table ---------------------------------------------------------------------------

def test_every_default_key_has_a_rule_and_every_rule_a_key():
    cfg, _, choices = load_yaml(DEFAULT_CONFIG)
    assert sorted(set(cfg) - set(RULES)) == [], "declare each new key in model_utils/options.py"
    assert sorted(set(RULES) - set(cfg)) == [], "rules for keys that DIV2K_config.yaml no longer has"
    for key, allowed in choices.items():  # the YAML's allowed values and the table agree
        assert getattr(RULES[key], "choices", None) == allowed, key


def test_model_choices_match_the_registry():
    from src.models.registry import list_models
    assert sorted(MODEL_FAMILIES) == list_models()


def test_shipped_config_and_presets_pass_their_rules():
    import glob
    for path in [DEFAULT_CONFIG] + sorted(glob.glob(os.path.join(ROOT, "configs", "*.yaml"))):
        cfg = get_config(["--config_path", path], schema_path=DEFAULT_CONFIG)
        assert isinstance(cfg.scale, int) and cfg.lr > 0 and 0 <= cfg.ema_decay < 1


# ---- bad values: one line naming the option and the allowed range ---------------------------

BAD_VALUES = [
    ("batch_size", "0"), ("batch_size", "abc"), ("batch_size", "2.5"), ("batch_size", "-3"),
    ("patch_size", "0"), ("val_every", "0"), ("calib_num", "0"), ("calib_batch", "0"),
    ("pac_hr_patch", "0"), ("pac_batch", "0"), ("total_steps", "0"), ("warmup_steps", "-1"),
    ("dbdc_p", "0"), ("dbdc_p", "0.5"), ("dbdc_p", "nan"), ("percentile", "0.4"), ("percentile", "1.5"),
    ("max_tile_mem_gb", "0"), ("max_tile_mem_gb", "inf"), ("max_tile_mem_gb", "-1"), ("max_tile_mem_gb", "nan"),
    ("lr", "nan"), ("lr", "inf"), ("lr", "-inf"), ("lr", "-0.001"), ("lr", "0"), ("lr", "fast"),
    ("min_lr", "-1e-5"), ("ema_decay", "1"), ("ema_decay", "1.5"), ("ema_decay", "-0.1"), ("ema_decay", "nan"),
    ("beta1", "1"), ("beta2", "-0.5"), ("lr_gamma", "0"), ("weight_decay", "-1"), ("clip_grad_norm", "nan"),
    ("loss_scale_value", "0"), ("train_cache_gb", "-1"), ("residual_loss_weight", "inf"), ("adder_eta", "0"),
    ("scale", "5"), ("scale", "3.5"), ("scale", "x3"), ("n_colors", "2"), ("feature_size", "10000000"),
    ("input_shape", "1,3,360"), ("input_shape", "1,3,0,640"), ("input_shape", "1,3,100000,640"),
    ("input_shape", "1,2,360,640"), ("input_shape", "a,b,c,d"), ("input_shape", "200,3,64,64"),
    ("lr_milestones", "3,abc"), ("lr_milestones", "0"), ("lr_milestones", "5000,3000"),
    ("eval_datasets", ","), ("tile_size", "-2"), ("tile_overlap", "-5"), ("shave", "-2"), ("gt_mod", "0"),
    ("seed", "-1"), ("calib_seed", "4294967296"), ("device_id", "-1"), ("w_bit", "9"), ("a_bit", "1"),
    ("num_workers", "0"), ("keep_last_ckpt", "0"), ("max_bad_steps", "0"), ("log_every", "0"),
    ("dataset_enlarge_ratio", "0"), ("self_ensemble", "maybe"), ("resume", "2"),
    ("model", "resnet"), ("device_target", "TPU"), ("quant_method", "kmeans"), ("mode", "eager"),
    ("data_path", ""), ("ckpt_dir", " "), ("variant", ""),
]


@pytest.mark.parametrize("key,value", BAD_VALUES, ids=[f"{k}={v}" for k, v in BAD_VALUES])
def test_bad_value_is_one_line_naming_option_and_range(key, value, capsys):
    with pytest.raises(SystemExit) as exc:
        get_config([f"--{key}", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert _lines(err) == [_lines(err)[0]] and err.startswith("error: "), err  # exactly one line
    assert f"--{key} {value}".strip() in err or f"--{key} ''" in err or f"--{key} {value!r}" in err, err
    rule = RULES[key]
    if hasattr(rule, "choices") and "is not one of" in err:
        assert f"is not one of {rule.choices}" in err, err
    else:
        assert f"{key} must be {rule.allowed()}" in err, err


def test_list_item_error_names_the_bad_item(capsys):
    with pytest.raises(SystemExit):
        get_config(["--lr_milestones", "3,abc"])
    err = capsys.readouterr().err
    assert "--lr_milestones 3,abc" in err and "item 'abc' is not an integer" in err


@pytest.mark.parametrize("argv,needle", [
    (["--lr", "1e-6"], "--min_lr 1e-05 is above --lr 1e-06"),  # cosine would rise from lr to min_lr
    (["--scale", "3", "--pac_hr_patch", "2"], "--pac_hr_patch 2 is below --scale 3"),
    (["--pac_act_lr", "0.001", "--pac_act_lr_min", "0.01"], "--pac_act_lr_min 0.01 is above --pac_act_lr 0.001"),
])
def test_rules_between_keys(argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        get_config(argv)
    assert exc.value.code == 2 and needle in capsys.readouterr().err


def test_rules_between_keys_allow_the_sound_cases():
    assert get_config(["--lr", "1e-6", "--lr_scheduler", "multistep"]).lr == 1e-6  # min_lr unused
    assert get_config(["--lr", "1e-6", "--min_lr", "0"]).min_lr == 0.0
    assert get_config(["--scale", "3", "--pac_hr_patch", "3"]).pac_hr_patch == 3


def test_good_values_still_parse():
    cfg = get_config(["--lr", "2e-4", "--ema_decay", "0.999", "--lr_milestones", "100,200", "--input_shape",
                      "1x3x64x64", "--dbdc_p", "0.01", "--scale", "3.0", "--tile_size", "-1", "--eval_datasets",
                      "Set5, Set14", "--self_ensemble", "yes"])
    assert (cfg.lr, cfg.ema_decay, cfg.lr_milestones, cfg.scale, cfg.tile_size) == (2e-4, 0.999, [100, 200], 3, -1)
    assert isinstance(cfg.scale, int) and cfg.eval_datasets == ["Set5", "Set14"] and cfg.self_ensemble is True


# ---- YAML values: the same coercion as the command line -------------------------------------

def _preset(tmp_path, body, name="my.yaml"):
    path = tmp_path / name
    path.write_text(f"_base_: {DEFAULT_CONFIG}\n{body}")
    return str(path)


def test_yaml_values_are_coerced_like_the_command_line(tmp_path):
    # YAML 1.1 reads 1e-4 as text and 3.0 as a float; both mean what the same text means on the CLI
    cfg = get_config(["--config_path", _preset(tmp_path, 'scale: 3.0\nbatch_size: "16"\nlr: 1e-4\n'
                                                          "eval_datasets: Set5\nlr_milestones: 1000\npre_trained:\n")])
    assert (cfg.scale, cfg.batch_size, cfg.lr) == (3, 16, 1e-4)
    assert type(cfg.scale) is int and type(cfg.batch_size) is int and type(cfg.lr) is float
    assert cfg.eval_datasets == ["Set5"] and cfg.lr_milestones == [1000] and cfg.pre_trained == ""
    assert cfg.model == "abpn"  # scale 3 -> the x3 default, as --scale 3 gives
    assert get_config(["--config_path", _preset(tmp_path, "scale: 3\n")]).to_dict() == \
        get_config(["--scale", "3"]).to_dict() | {"config_path": cfg.config_path}


@pytest.mark.parametrize("body,needle", [
    ("scale: 3.5\n", "scale: 3.5 in my.yaml: not an integer"),
    ("batch_size: yes\n", "batch_size: True in my.yaml: not an integer"),
    ("lr: .nan\n", "lr: nan in my.yaml: not a finite number"),
    ("ema_decay: 1.0\n", "ema_decay: 1 in my.yaml: out of range; ema_decay must be a number in [0, 1)"),
    ("lr_milestones: [100, abc]\n", "item 'abc' is not an integer"),
    ("pre_trained: True\n", "pre_trained: True in my.yaml: a boolean, not text"),
    ("bit_table: {conv: [4]}\n", "bit_table"),
    ("bit_table: {conv: [4, 12]}\n", "bit_table"),
    ("default_models: {5: sesr/M5}\n", "default_models"),
])
def test_bad_yaml_values_name_key_and_file(tmp_path, body, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        get_config(["--config_path", _preset(tmp_path, body)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and len(_lines(err)) == 1, err


# ---- config files: unknown and missing keys, YAML errors, missing files -----------------------

def test_standalone_file_with_a_misspelled_key_is_refused(tmp_path, capsys):
    path = tmp_path / "mine.yaml"
    path.write_text("model: abpn\nscale: 3\nlrr: 0.1\n")  # no _base_: a stand-alone user file
    with pytest.raises(ConfigError, match=r"unknown key\(s\) lrr \(did you mean lr\?\)"):
        get_config(["--config_path", str(path)])
    assert _code(eval_entry.main, ["--config_path", str(path)]) == 2
    assert "unknown key(s) lrr" in _one_error(capsys)


def test_full_copy_of_the_defaults_with_a_renamed_key_is_refused_by_entry_scripts(tmp_path, capsys):
    text = open(DEFAULT_CONFIG, encoding="utf-8").read()
    assert "\nlr: 0.001\n" in text
    path = tmp_path / "copy.yaml"
    path.write_text(text.replace("\nlr: 0.001\n", "\nlearning_rate: 0.001\n", 1))
    for main in (train_entry.main, eval_entry.main):
        assert _code(main, ["--config_path", str(path)]) == 2
        assert "unknown key(s) learning_rate" in _one_error(capsys)


def test_partial_file_without_base_is_told_to_use_base(tmp_path, capsys):
    path = tmp_path / "part.yaml"
    path.write_text("model: abpn\nscale: 3\n")
    assert _code(eval_entry.main, ["--config_path", str(path)]) == 2
    line = _one_error(capsys)
    assert "lacks" in line and f"_base_: {DEFAULT_CONFIG}" in line


@pytest.mark.parametrize("text,needle", [
    ("scale: [2, 3\nlr: 0.1\n", "YAML error at line"),
    ("scale: 3\n  lr: 0.1\n", "YAML error at line"),
    ("lr: 0.1\nlr: 0.2\n", "key 'lr' is written twice"),
    ("- 1\n- 2\n", "first YAML document must be a mapping"),
    ("scale: 3\n---\n[help]\n", "document 2 must be a mapping"),
    ("1: 3\n", "config keys must be names"),
])
def test_yaml_file_errors_are_one_line(tmp_path, text, needle, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(needle)):
        load_yaml(str(path))
    assert _code(eval_entry.main, ["--config_path", str(path)]) == 2
    assert needle in _one_error(capsys)


def test_missing_or_folder_config_file(tmp_path, capsys):
    assert _code(train_entry.main, ["--config_path", str(tmp_path / "none.yaml")]) == 2
    assert "config file not found" in _one_error(capsys)
    assert _code(train_entry.main, ["--config_path", str(tmp_path)]) == 2
    assert "is a folder" in _one_error(capsys)


def test_argparse_errors_are_one_line(capsys):
    assert _code(eval_entry.main, ["--batch_size"]) == 2
    assert "--batch_size: expected one argument" in _one_error(capsys)
    assert _code(eval_entry.main, ["--sclae", "3"]) == 2
    assert "unknown option(s) --sclae (did you mean --scale?)" in _one_error(capsys)


def test_validate_accepts_keys_without_rules():
    values = validate({"scale": "2", "my_key": object})
    assert values["scale"] == 2 and values["my_key"] is object


# ---- device ------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["GPU", "Ascend"])
def test_device_this_build_lacks_is_refused_before_anything_runs(target, tmp_path, capsys):
    from src.engine.context import device_available
    if device_available(target):
        pytest.skip(f"this MindSpore build supports {target}")
    # a missing checkpoint too: the device line must come first, before any work
    code = _code(eval_entry.main, ["--device_target", target, "--pre_trained", str(tmp_path / "none.ckpt")])
    assert code == 2
    line = _one_error(capsys)
    assert f"--device_target {target}" in line and "pass --device_target CPU" in line
    assert _code(train_entry.main, ["--device_target", target, "--ckpt_dir", str(tmp_path / "ck")]) == 2
    assert f"has no {target} support" in _one_error(capsys)
    assert not (tmp_path / "ck").exists()


# ---- output paths -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cfgval")
    write_smooth_images(root / "data" / "benchmark" / "One" / "HR", 1, 48)
    write_smooth_images(root / "train", 4, 48, seed=2)
    write_smooth_images(root / "flat_src", 1, 8)
    net = create_model("abpn", "M2C8", 2)
    ckpt = str(root / "abpn.ckpt")
    save_checkpoint(net, ckpt, meta=model_meta(net))
    return root, ckpt


def _model_args(root, ckpt):
    return ["--model", "abpn", "--variant", "M2C8", "--scale", "2", "--pre_trained", ckpt]


def _eval_args(root, ckpt, *extra):
    return _model_args(root, ckpt) + ["--data_path", str(root / "data"), "--eval_datasets", "One",
                                      "--cache_dir", str(root / "cache"), *extra]


def _train_args(root, *extra):
    return ["--model", "abpn", "--variant", "M2C8", "--scale", "2", "--train_path", str(root / "train"),
            "--val_data_path", str(root / "data"), "--val_datasets", "One", "--patch_size", "8",
            "--batch_size", "2", "--total_steps", "2", "--val_every", "2", "--num_workers", "1",
            "--cache_dir", str(root / "cache"), *extra]


def _leftovers(folder):
    """Temporary or partial files left in ``folder`` (recursively)."""
    found = []
    for base, _, files in os.walk(folder):
        found += [os.path.join(base, f) for f in files if ".tmp" in f or f.startswith(".")]
    return found


def test_output_folder_that_is_a_file_is_refused_before_work(tiny, tmp_path, capsys):
    root, ckpt = tiny
    blocker = tmp_path / "taken"
    blocker.write_text("keep me")
    cases = [
        (train_entry.main, _train_args(root, "--ckpt_dir", str(blocker)), "--ckpt_dir"),
        (train_entry.main, _train_args(root, "--ckpt_dir", str(blocker / "sub")), "--ckpt_dir"),
        (eval_entry.main, _eval_args(root, ckpt, "--output_path", str(blocker)), "--output_path"),
        (eval_entry.main, _eval_args(root, ckpt, "--result_file", str(tmp_path)), "--result_file"),
        (eval_entry.main, _eval_args(root, ckpt, "--result_file", str(blocker / "r.json")), "--result_file"),
        (export_entry.main, _model_args(root, ckpt) + ["--file_name", str(blocker / "m.onnx")], "--file_name"),
        (export_entry.main, _model_args(root, ckpt) + ["--output_path", str(blocker)], "--output_path"),
        (infer_entry.main, _model_args(root, ckpt) + ["--input_path", str(root / "train"), "--output_path",
                                                      str(blocker / "x")], "--output_path"),
    ]
    for main, argv, option in cases:
        assert _code(main, argv) == 2, argv
        line = _one_error(capsys)
        assert option in line and ("is a file" in line or "is a folder" in line), line
    assert blocker.read_text() == "keep me"


def test_unwritable_output_folder_is_refused(tiny, tmp_path, monkeypatch, capsys):
    """As root, permission bits never deny a write and no read-only mount is available here, so the
    read-only answer of ``os.access`` is simulated; the non-root test below checks real permissions."""
    root, _ = tiny
    locked = str(tmp_path / "ro")
    os.makedirs(locked)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if os.path.abspath(p) == locked
                        else real_access(p, mode, **kw))
    assert _code(train_entry.main, _train_args(root, "--ckpt_dir", os.path.join(locked, "run"))) == 2
    line = _one_error(capsys)
    assert "--ckpt_dir" in line and f"folder {locked} is not writable" in line
    assert os.listdir(locked) == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores permission bits")
def test_folder_without_write_permission_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(OutputPathError, match="not writable"):
            check_output_folder(str(locked / "out"), "output_path")
    finally:
        locked.chmod(0o755)


def test_output_checks_create_nothing(tmp_path):
    target = tmp_path / "a" / "b"
    assert check_output_folder(str(target), "ckpt_dir") == str(target)
    assert check_output_file(str(target / "r.json"), "result_file") == str(target / "r.json")
    assert not (tmp_path / "a").exists()


def _enospc_writer(real_target_arg):
    """A writer that starts writing its temporary file, then fails as a full disk does."""
    def fake(*args, **kwargs):
        path = real_target_arg(args, kwargs)
        with open(path, "wb") as fh:
            fh.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
    return fake


def test_full_disk_writing_the_eval_report(tiny, tmp_path, monkeypatch, capsys):
    root, ckpt = tiny
    out = tmp_path / "out"

    def fake_dump(obj, fh, **kwargs):
        fh.write('{"results": ')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), fh.name)
    monkeypatch.setattr(json, "dump", fake_dump)
    assert _code(eval_entry.main, _eval_args(root, ckpt, "--output_path", str(out))) == 2
    line = _one_error(capsys)
    assert "No space left on device" in line and "the disk is full" in line
    assert not list(out.glob("*.json")) and _leftovers(out) == []


def test_full_disk_writing_the_export(tiny, tmp_path, monkeypatch, capsys):
    root, ckpt = tiny
    import onnx
    monkeypatch.setattr(onnx, "save", _enospc_writer(lambda a, k: a[1]))
    target = tmp_path / "m.onnx"
    assert _code(export_entry.main, _model_args(root, ckpt) + ["--file_format", "ONNX", "--file_name", str(target),
                                                               "--export_check", "False"]) == 2
    assert "No space left on device" in _one_error(capsys)
    assert not target.exists() and _leftovers(tmp_path) == []


def test_full_disk_writing_a_training_checkpoint(tiny, tmp_path, monkeypatch, capsys):
    root, _ = tiny
    import mindspore as ms
    monkeypatch.setattr(ms, "save_checkpoint", _enospc_writer(lambda a, k: a[1]))
    ck = tmp_path / "ck"
    assert _code(train_entry.main, _train_args(root, "--ckpt_dir", str(ck))) == 2
    assert "No space left on device" in _one_error(capsys)
    assert not list(ck.glob("*.ckpt")) and _leftovers(ck) == []


def test_full_disk_and_file_in_the_way_for_convert(tmp_path, monkeypatch, capsys):
    import mindspore as ms
    import torch_format as tf
    from src.weights.convert_cli import main as convert
    shapes = {}
    for name, cin, cout in (("backbone.0", 3, 8), ("backbone.2.0", 8, 8), ("backbone.3.0", 8, 8),
                            ("backbone.4", 8, 12), ("backbone.6", 12, 12)):  # ABPN-M2C8 x2, PyTorch names
        shapes.update({f"{name}.weight": (cout, cin, 3, 3), f"{name}.bias": (cout,)})
    src = str(tmp_path / "abpn.pth")
    tf.save_torch_format(tf.random_state_dict(shapes, 0), src)
    args = ["--src", src, "--model", "abpn", "--variant", "M2C8", "--scale", "2"]
    blocker = tmp_path / "taken"
    blocker.write_text("x")
    assert convert(args + ["--dst", str(blocker / "o.ckpt")]) == 2
    line = _one_error(capsys)
    assert str(blocker) in line and ("File exists" in line or "Not a directory" in line), line
    assert blocker.read_text() == "x"
    monkeypatch.setattr(ms, "save_checkpoint", _enospc_writer(lambda a, k: a[1]))
    assert convert(args + ["--dst", str(tmp_path / "o.ckpt")]) == 2
    assert "No space left on device" in _one_error(capsys)
    assert not (tmp_path / "o.ckpt").exists() and _leftovers(tmp_path) == []


def test_os_errors_become_one_line():
    line = error_line(OSError(errno.EROFS, "Read-only file system", "/x/y.ckpt"))
    assert line == "Read-only file system: /x/y.ckpt; the file system is read-only; write somewhere else"
    assert error_line(ValueError("two\nlines")) == "two lines"
    assert error_line(FileNotFoundError("config file not found: a.yaml")) == "config file not found: a.yaml"


def test_print_user_error_is_one_line_for_user_errors_and_raises_defects(capsys):
    """The entry points' one handler: a user error -> one line and 2; a defect is raised again, traceback kept."""
    from src.errors import UserError, print_user_error  # pylint: disable=import-outside-toplevel
    assert print_user_error(UserError("--x 1: bad")) == 2
    assert capsys.readouterr().err == "error: --x 1: bad\n"
    disk = OSError(errno.ENOSPC, "No space left on device", "/o.ckpt")
    assert print_user_error(disk, "cannot write /o.ckpt") == 2
    assert capsys.readouterr().err.startswith("error: cannot write /o.ckpt: No space left on device: /o.ckpt; ")
    assert print_user_error(UserError("u"), "cannot write") == 2 and capsys.readouterr().err == "error: u\n"
    for defect in (ValueError("a bug"), OSError("no errno"), TypeError("t")):
        try:
            raise defect
        except Exception as caught:  # pylint: disable=broad-except
            with pytest.raises(type(defect)) as again:
                print_user_error(caught)
            assert again.value is defect and again.value.__traceback__ is not None
    assert capsys.readouterr().err == ""


# ---- inputs: a folder named like an image, calibration data -------------------------------------

def test_folder_named_like_an_image_is_read_as_a_folder(tiny, tmp_path, capsys):
    root, ckpt = tiny
    fake = tmp_path / "x.png"
    write_smooth_images(fake, 1, 16)
    out = tmp_path / "out"
    assert _code(infer_entry.main, _model_args(root, ckpt) + ["--input_path", str(fake), "--output_path",
                                                             str(out)]) == 0
    assert len(list(out.glob("*.png"))) == 1
    empty = tmp_path / "empty.png"
    empty.mkdir()
    capsys.readouterr()
    assert _code(infer_entry.main, _model_args(root, ckpt) + ["--input_path", str(empty)]) == 2
    assert f"no images (.png, .jpg, .bmp, ...) in {empty}" in _one_error(capsys)


def test_missing_calib_path_names_calib_path(tiny, tmp_path, capsys):
    root, ckpt = tiny
    missing = tmp_path / "nocalib"
    assert _code(eval_entry.main, _eval_args(root, ckpt, "--quant_method", "minmax", "--calib_path", str(missing),
                                             "--output_path", str(tmp_path / "o"))) == 2
    line = _one_error(capsys)
    assert "--calib_path" in line and str(missing) in line and "--train_path" not in line


def test_omse_bounds_of_a_one_value_tensor():
    from src.quantlib.grid import quantize_np
    from src.quantlib.observers import OMSEObserver, omse_bounds
    for value in (0.0, 0.5, -2.0):
        lower, upper = omse_bounds(np.full(1000, value), 8)
        assert (lower, upper) == (value, value)
        assert quantize_np(np.array([value]), lower, upper, 8, False)[0] == pytest.approx(value, abs=1e-12)
    assert omse_bounds(np.full(50, -0.25), 4, symmetric=True) == (-0.25, 0.25)
    dead = OMSEObserver(8)
    dead.collect(np.zeros((2, 4, 8, 8)))  # a ReLU that never fires on the calibration data
    assert dead.bounds() == (0.0, 0.0)
    with pytest.raises(ValueError, match="non-finite"):
        omse_bounds(np.array([0.0, np.nan]), 8)


def test_flat_calibration_images_are_refused(tiny, tmp_path, capsys):
    import cv2
    root, ckpt = tiny
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, value in enumerate((0, 128, 255)):
        cv2.imwrite(str(flat / f"{i}.png"), np.full((64, 64, 3), value, np.uint8))
    for method in ("omse", "minmax"):
        assert _code(eval_entry.main, _eval_args(root, ckpt, "--quant_method", method, "--calib_path", str(flat),
                                                 "--calib_num", "4", "--pac_hr_patch", "32",
                                                 "--output_path", str(tmp_path / "o"))) == 2
        line = _one_error(capsys)
        assert f"--calib_path {flat}" in line and "flat" in line


def test_full_copy_made_before_a_key_was_added_takes_its_default(tmp_path, capsys):
    """A user's complete copy of DIV2K_config.yaml (help and choices documents included) from before
    'overwrite' existed still runs: the new key gets its default, with a notice naming it."""
    text = open(DEFAULT_CONFIG, encoding="utf-8").read()
    assert "\noverwrite: False\n" in text
    path = tmp_path / "old.yaml"
    path.write_text(text.replace("\noverwrite: False\n", "\n", 1))
    config = get_config(["--config_path", str(path)], schema_path=DEFAULT_CONFIG)
    assert config.overwrite is False
    assert f"notice: {path} lacks overwrite" in capsys.readouterr().out


def test_export_checks_the_file_it_will_really_write(tiny, tmp_path, capsys):
    """--file_name without extension: the exporter writes '<name>.onnx', so a folder '<name>' is no
    obstacle, while a folder '<name>.onnx' is refused before any work."""
    root, ckpt = tiny
    (tmp_path / "out").mkdir()
    args = _model_args(root, ckpt) + ["--file_format", "ONNX", "--input_shape", "1,3,16,16"]
    assert _code(export_entry.main, args + ["--file_name", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out.onnx").is_file()
    capsys.readouterr()
    (tmp_path / "taken.onnx").mkdir()
    assert _code(export_entry.main, args + ["--file_name", str(tmp_path / "taken")]) == 2
    assert f"--file_name {tmp_path / 'taken.onnx'} is a folder" in _one_error(capsys)
