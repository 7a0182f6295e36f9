"""Configuration sections: each entry script's --help lists its own, old option names still work."""
import os
import subprocess
import sys

import pytest
import yaml

from model_utils.config import DEFAULT_CONFIG, get_config
from model_utils.options import ALIASES, ENTRY_SECTIONS, SECTIONS, section_of

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
    assert "--lr " not in text and "--total_steps" not in text and "--qat" not in text
    # the phone path (--quant int8 from float weights) calibrates and scores the file it writes
    assert "--quant_method" in text and "--w_bit" in text and "--pac_act_iters" in text and "--eval_datasets" in text
    # the calibration images: an older checkpoint's deployment grids are calibrated at export
    assert "--calib_path" in text and "--calib_num" in text
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


def _names(cls):
    from dataclasses import fields  # pylint: disable=import-outside-toplevel
    return {f.name for f in fields(cls)}


def test_typed_eval_infer_export_sections_match_the_help_sections():
    """Evaluation, upscaling and export read the keys --help groups under their sections."""
    from src.engine.sections import EvalData, EvalOutputs, EvalProtocol, Inference  # pylint: disable=import-outside-toplevel
    from src.export.sections import ExportSettings  # pylint: disable=import-outside-toplevel
    from src.models.choice import ModelChoice  # pylint: disable=import-outside-toplevel
    keys = lambda *names: {k for name in names for k in SECTIONS[name][1]}  # noqa: E731
    assert _names(EvalData) == keys("eval_data") and _names(Inference) == keys("inference")
    assert _names(EvalProtocol) == keys("protocol", "cache") | {"scale"}
    assert _names(EvalOutputs) == keys("outputs", "eval_outputs") and _names(ExportSettings) == keys("export")
    assert _names(ModelChoice) - {"options"} <= keys("model")
    for entry, sections in (("eval", ("eval_data", "protocol", "cache", "inference", "outputs", "eval_outputs")),
                            ("export", ("export", "outputs", "quantization", "eval_data", "protocol")),
                            ("infer", ("infer", "inference", "outputs"))):
        assert set(sections) <= set(ENTRY_SECTIONS[entry])


# every key of the quantization groups -> where the typed Quantization section holds it: the recon_*, pac_* and
# calib_* groups by field name (ReconConfig.drop from recon_drop), the quantization group key by key
QUANT_READS = {
    "quant_method": lambda q: q.method, "w_bit": lambda q: q.qcfg.w_bit, "a_bit": lambda q: q.qcfg.a_bit,
    "w_symmetric": lambda q: q.qcfg.w_symmetric, "int8_scope": lambda q: q.qcfg.int8_scope,
    "fp_scope": lambda q: q.qcfg.fp_scope, "bit_table": lambda q: q.qcfg.bit_table,
    "calib_batch": lambda q: q.calib.batch, "equalize": lambda q: q.calib.equalize,
    "weight_grid": lambda q: q.calib.weight_grid, "input_minmax": lambda q: q.calib.input_minmax,
    "percentile": lambda q: q.calib.percentile, "dbdc_p": lambda q: q.calib.dbdc_p,
    "pac_hr_patch": lambda q: q.images.hr_patch, "save_quant_ckpt": lambda q: q.save_quant_ckpt,
    "quant_placement": lambda q: q.qcfg.placement,
}
for _group, _part, _prefix in (("pac", "pac", "pac_"), ("recon", "recon", "recon_"), ("calibration_data", "images", "calib_")):
    QUANT_READS.update({key: (lambda q, part=_part, name=key[len(_prefix):]: getattr(getattr(q, part), name))
                        for key in SECTIONS[_group][1]})


def test_quantization_section_reads_every_quantization_and_pac_key():
    from src.engine.sections import quantization_of  # pylint: disable=import-outside-toplevel
    groups = set(SECTIONS["quantization"][1]) | set(SECTIONS["pac"][1]) | set(SECTIONS["recon"][1]) \
        | set(SECTIONS["calibration_data"][1])
    assert set(QUANT_READS) == groups, (f"a new option of the quantization group: add to QUANT_READS where the "
                                        f"Quantization section holds it ({sorted(groups - set(QUANT_READS))})")
    given = {"quant_method": "dbdc_recon", "w_bit": "4", "a_bit": "6", "quant_placement": "ptq4sr", "w_symmetric": "False", "int8_scope": "conv1",
             "fp_scope": "tail", "calib_path": "calib_x", "calib_num": "7", "calib_seed": "3", "calib_batch": "5",
             "equalize": "True", "weight_grid": "minmax", "input_minmax": "False", "percentile": "0.99", "dbdc_p": "0.002", "pac_hr_patch": "48",
             "save_quant_ckpt": "q_x.ckpt", "pac_act_iters": "11", "pac_weight_iters": "12", "pac_act_lr": "0.3",
             "pac_act_lr_min": "0.2", "pac_weight_lr": "0.25", "pac_weight_lr_min": "0.15", "pac_batch": "6",
             "pac_feature_weight": "1.5", "pac_relative_features": "False", "pac_loss": "l2",
             "pac_graph": "False", "recon_iters": "13", "recon_block": "3", "recon_batch": "5", "recon_round_lr": "0.05",
             "recon_act_lr": "0.002", "recon_round_weight": "0.01", "recon_warmup": "0.3", "recon_drop": "0.25",
             "recon_rounding": "False", "recon_act": "True"}
    config = get_config([item for key, value in given.items() for item in (f"--{key}", value)])
    quant = quantization_of(config)
    for key, read in QUANT_READS.items():
        if key != "bit_table":  # YAML only
            assert read(quant) == getattr(config, key), key
    assert quant.calib.method == "dbdc" and quant.pac.seed == 3  # dbdc_recon = DBDC + PaC + reconstruction
    assert quant.recon.seed == 3
    assert quantization_of(config.replace(quant_method="dbdc_pac")).recon is None
    assert os.path.isabs(quant.images.folder) or quant.images.folder == "calib_x"
    assert quantization_of(get_config([])).qcfg is None  # float evaluation: no quantlib settings


def test_sections_are_built_once_at_the_top():
    """Below the run functions, evaluation / upscaling / export read typed sections, never the configuration."""
    import ast  # pylint: disable=import-outside-toplevel
    tops = {"run_evaluation", "run_checkpoint_evaluation", "run_file_evaluation", "run_upscale", "run_export"}
    for name in ("engine/evaluator.py", "engine/checkpoint_eval.py", "engine/evaluate.py", "engine/file_eval.py", "engine/inference.py", "engine/upscale_images.py",
                 "engine/quant_eval.py", "export/exporter.py"):
        with open(os.path.join(ROOT, "src", name), encoding="utf-8") as fh:
            tree = ast.parse(fh.read())
        for func in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name not in tops):
            reads = [n.lineno for n in ast.walk(func) if isinstance(n, ast.Name) and n.id == "config"]
            assert not reads, f"src/{name}:{reads[0]} {func.name} reads the configuration"
