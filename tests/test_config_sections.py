"""Configuration sections: each entry script's --help lists its own, old option names still work."""
import os
import subprocess
import sys

import pytest
import yaml

from model_utils.config import DEFAULT_CONFIG, get_config
from model_utils.sections import ALIASES, ENTRY_SECTIONS, SECTIONS, section_of

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _help(entry, capsys):
    with pytest.raises(SystemExit):
        get_config(["--help"], entry=entry)
    return capsys.readouterr().out


def test_every_default_key_is_in_exactly_one_section():
    with open(DEFAULT_CONFIG, encoding="utf-8") as fh:
        keys = list(next(yaml.safe_load_all(fh)))
    listed = [k for _, members in SECTIONS.values() for k in members]
    assert sorted(listed) == sorted(keys) and len(listed) == len(set(listed))
    assert all(section in SECTIONS for sections in ENTRY_SECTIONS.values() for section in sections)


def test_export_help_lists_export_options_not_training_ones(capsys):
    text = _help("export", capsys)
    assert "--export_file" in text and "--file_format" in text and "--pre_trained" in text
    assert "--lr " not in text and "--total_steps" not in text and "--calib_num" not in text
    assert "export:" in text  # grouped under its section title


def test_train_help_lists_training_options_not_export_ones(capsys):
    text = _help("train", capsys)
    assert "--lr " in text and "--total_steps" in text and "--qat" in text and "--pac_batch" in text
    assert "--export_file" not in text and "--file_format" not in text and "--input_path" not in text


def test_infer_and_eval_help(capsys):
    infer = _help("infer", capsys)
    assert "--model_file" in infer and "--input_path" in infer and "--tile_size" in infer
    assert "--eval_datasets" not in infer and "--lr " not in infer
    evaluation = _help("eval", capsys)
    assert "--eval_datasets" in evaluation and "--quant_method" in evaluation and "--result_file" in evaluation
    assert "--export_file" not in evaluation and "--lr " not in evaluation


def test_another_scripts_option_is_accepted_and_unused():
    """Shared command lines (scripts/*.sh) may pass a training option to export.py: accepted, as before."""
    cfg = get_config(["--lr", "0.1", "--export_file", "m.onnx"], entry="export")
    assert cfg.lr == 0.1 and cfg.export_file == "m.onnx"


@pytest.mark.parametrize("entry,key", [("export", "export_file"), ("infer", "model_file")])
def test_file_name_is_an_alias_with_a_notice(entry, key, capsys):
    cfg = get_config(["--file_name", "x.onnx"], entry=entry)
    out = capsys.readouterr().out
    assert getattr(cfg, key) == "x.onnx" and cfg.option(key) == "--file_name"
    assert out.count("\n") == 1 and f"--file_name is now --{key}" in out
    other = "model_file" if key == "export_file" else "export_file"
    assert getattr(cfg, other) == ""
    assert get_config([f"--file_name=y.onnx"], entry=entry).get(key) == "y.onnx"


def test_file_name_without_entry_sets_both():
    cfg = get_config(["--file_name", "x.onnx"])
    assert cfg.export_file == cfg.model_file == "x.onnx"
    assert set(ALIASES[None]["file_name"]) == {"export_file", "model_file"}


def test_file_name_in_an_older_config_copy(tmp_path, capsys):
    with open(DEFAULT_CONFIG, encoding="utf-8") as fh:
        text = fh.read().replace('export_file: ""\n', 'file_name: "old.onnx"\n', 1)
    text = text.replace('model_file: ""\n', "", 1)
    path = tmp_path / "old.yaml"
    path.write_text(text, encoding="utf-8")
    cfg = get_config(["--config_path", str(path)], entry="export")
    assert cfg.export_file == "old.onnx" and "file_name in" in capsys.readouterr().out


def test_section_of():
    assert section_of("lr") == "schedule" and section_of("export_file") == "export" and section_of("x") is None


def test_export_script_help_has_no_lr():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), "--help"], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0 and "--export_file" in proc.stdout and "--lr " not in proc.stdout


def test_typed_training_sections_match_the_help_sections():
    """The typed sections read exactly the keys --help groups under the same names."""
    from dataclasses import fields  # pylint: disable=import-outside-toplevel
    from src.engine.sections import Optimisation, Schedule, TrainData, TrainingRun, training_sections  # pylint: disable=import-outside-toplevel
    for cls, name in ((TrainData, "train_data"), (Optimisation, "optimisation"), (Schedule, "schedule"),
                      (TrainingRun, "training_run")):
        assert tuple(f.name for f in fields(cls)) == SECTIONS[name][1]
    sections = training_sections(get_config(["--lr_milestones", "10,20", "--lr", "0.5"]))
    assert sections.schedule.lr == 0.5 and sections.schedule.lr_milestones == (10, 20)
    with pytest.raises(Exception):
        sections.schedule.lr = 1.0  # frozen
