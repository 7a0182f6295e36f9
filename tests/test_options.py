"""One declaration per option (model_utils/options.py): the YAML, the rules, the sections and the typed
settings src reads are derived from it or checked against it here."""
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest
import yaml

from model_utils.config import DEFAULT_CONFIG, get_config
from model_utils.options import (DECLARED, DEFAULTS, ENTRY_SECTIONS, OPTIONS, RULES, SECTIONS, choices_of, yaml_text,
                                 yaml_value)
from model_utils.validate import validate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from config_flow import ConfigFlow  # noqa: E402  pylint: disable=wrong-import-position
from option_spread import spread  # noqa: E402  pylint: disable=wrong-import-position


def test_div2k_config_is_what_the_declarations_write():
    with open(DEFAULT_CONFIG, encoding="utf-8") as handle:
        assert handle.read() == yaml_text(), "run: python -m model_utils.options DIV2K_config.yaml"
    done = subprocess.run([sys.executable, "-m", "model_utils.options", "--check", DEFAULT_CONFIG], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_yaml_documents_read_back_as_the_declarations():
    with open(DEFAULT_CONFIG, encoding="utf-8") as handle:
        values, helps, allowed = yaml.safe_load_all(handle)
    assert list(values) == list(OPTIONS) and values == DEFAULTS
    assert helps == {key: option.help for key, option in OPTIONS.items()}
    assert all(option.help.strip() for option in OPTIONS.values())
    assert allowed == {key: choices_of(option.rule) for key, option in OPTIONS.items() if choices_of(option.rule)}
    assert allowed["pac_loss"] == ["auto", "l1", "l2"] and "equalize" not in allowed  # auto-or-bool lists nothing


def test_every_default_passes_its_own_rule_and_the_rules_between_options():
    assert list(RULES) == list(OPTIONS)
    checked = validate(dict(DEFAULTS))
    assert checked == DEFAULTS


@pytest.mark.parametrize("value", ["", "1", "255", "yes", "on", "null", "a: b", "x, y", "#c", "'q'", '"d"', "1e-4",
                                   0.00001, 65536.0, 1e-6, 3, True, [], ["Set5", "Set14"], {2: "sesr/M5"}, {}])
def test_yaml_values_read_back_as_themselves(value):
    text = yaml_value(value)
    assert yaml.safe_load(f"k: {text}")["k"] == value


def test_sections_and_entries_come_from_the_declarations():
    assert [s.name for s in DECLARED] == list(SECTIONS)
    keys = [o.key for s in DECLARED for o in s.options]
    assert len(keys) == len(set(keys)) == len(OPTIONS)
    assert all(set(s.entries) <= set(ENTRY_SECTIONS) and s.entries for s in DECLARED)
    assert "recon" in ENTRY_SECTIONS["eval"] and "recon" not in ENTRY_SECTIONS["infer"]


# each group of options -> the settings class that reads all of it, by field name with this prefix
def _filled_by():
    from src.data.calib_data import CalibrationImages  # pylint: disable=import-outside-toplevel
    from src.engine import sections as eng  # pylint: disable=import-outside-toplevel
    from src.export.sections import ExportSettings  # pylint: disable=import-outside-toplevel
    from src.quantlib import PaCConfig, ReconConfig  # pylint: disable=import-outside-toplevel
    return {"recon": (ReconConfig, "recon_"), "pac": (PaCConfig, "pac_"), "calibration_data": (CalibrationImages, "calib_"),
            "export": (ExportSettings, ""), "train_data": (eng.TrainData, ""), "optimisation": (eng.Optimisation, ""),
            "schedule": (eng.Schedule, ""), "training_run": (eng.TrainingRun, ""), "inference": (eng.Inference, "")}


def test_every_option_of_a_group_is_a_field_of_the_settings_it_fills():
    from src.quantlib import CalibrationConfig, QuantConfig  # pylint: disable=import-outside-toplevel
    from src.utils.config_fill import unread_options  # pylint: disable=import-outside-toplevel
    for name, (cls, prefix) in _filled_by().items():
        assert unread_options(cls, SECTIONS[name][1], prefix) == [], name
    # the quantization group fills two library settings; the rest is the method, the placement (resolved), the
    # calibration patch size (CalibrationImages.hr_patch) and where the calibrated model goes
    quantization = set(SECTIONS["quantization"][1]) - {"quant_method", "quant_placement", "pac_hr_patch",
                                                       "save_quant_ckpt"}
    unread = set(unread_options(QuantConfig, quantization)) & set(unread_options(CalibrationConfig, quantization,
                                                                                  ("calib_", "")))
    assert unread == set()
    # and the finder finds an option no field reads
    assert unread_options(_filled_by()["recon"][0], ("recon_iters", "recon_typo"), "recon_") == ["recon_typo"]


def test_library_settings_are_filled_by_field_name_from_the_options():
    from src.engine.sections import quantization_of  # pylint: disable=import-outside-toplevel
    config = get_config(["--quant_method", "dbdc_recon", "--recon_drop", "0.25", "--recon_block", "3",
                         "--pac_loss", "l1", "--pac_batch", "3", "--calib_num", "9", "--calib_seed", "4",
                         "--calib_batch", "5"])
    quant = quantization_of(config)
    assert (quant.recon.drop, quant.recon.block, quant.recon.seed) == (0.25, 3, 4)
    assert (quant.pac.loss, quant.pac.batch, quant.pac.seed) == ("l1", 3, 4)
    assert (quant.images.num, quant.images.seed, quant.calib.batch) == (9, 4, 5)
    assert quant.recon.beta_start == 20.0  # a library field no option fills keeps the library's default


def test_a_library_refusal_is_said_again_with_the_options_name():
    """ReconConfig refuses drop 1.5 in its own terms; filled from the configuration, the user reads --recon_drop
    (the loader's rule refuses it first on the command line; a configuration built in code meets the library's)."""
    from src.engine.sections import quantization_of  # pylint: disable=import-outside-toplevel
    from src.errors import SettingError, UserError  # pylint: disable=import-outside-toplevel
    from src.quantlib import PaCConfig, ReconConfig  # pylint: disable=import-outside-toplevel
    from src.utils.config_fill import fill_section  # pylint: disable=import-outside-toplevel
    config = get_config(["--quant_method", "dbdc_recon"])
    assert quantization_of(config).recon.drop == DEFAULTS["recon_drop"]
    with pytest.raises(UserError) as caught:  # a value the loader never saw (set in code)
        quantization_of(config.replace(recon_drop=1.5))
    assert not isinstance(caught.value, SettingError)
    assert str(caught.value) == "--recon_drop 1.5: recon_drop must be in [0, 1)"
    with pytest.raises(UserError, match=r"^--pac_loss huber: pac_loss must be 'l1' or 'l2'$"):
        fill_section(PaCConfig, {key: DEFAULTS[key] for key in SECTIONS["pac"][1]}, "pac_",
                     resolved={"pac_loss": "huber", "pac_act_iters": 1, "pac_weight_iters": 0, "pac_feature_weight": 0.0},
                     seed=0)
    options = {key: DEFAULTS[key] for key in SECTIONS["recon"][1]}
    with pytest.raises(SettingError):  # a value given in code (not an option) stays in the library's terms
        fill_section(ReconConfig, options, "recon_", drop=1.5, seed=0, defaults=("beta_start", "beta_end"))


def test_fill_section_reads_options_not_attributes_of_the_loaded_configuration():
    """A field named like an attribute of the loaded Config (path, get, option) is not filled from it."""
    from src.utils.config_fill import fill_section  # pylint: disable=import-outside-toplevel

    @dataclass
    class Located:
        path: str = "default"
        scale: int = 0
    assert fill_section(Located, get_config(["--scale", "3"]), defaults=("path",)) == Located("default", 3)


def test_fill_section_refuses_a_field_no_option_fills():
    from src.utils.config_fill import fill_section  # pylint: disable=import-outside-toplevel

    @dataclass
    class Settings:
        alpha: int
        beta: int = 2
    assert fill_section(Settings, {"x_alpha": 1, "x_beta": 5}, "x_") == Settings(1, 5)
    assert fill_section(Settings, {"x_alpha": 1}, "x_", defaults=("beta",)) == Settings(1, 2)
    assert fill_section(Settings, {"alpha": 1, "x_beta": 7}, ("x_", "")) == Settings(1, 7)
    with pytest.raises(AttributeError, match="Settings.beta: no option x_beta"):
        fill_section(Settings, {"x_alpha": 1}, "x_")
    with pytest.raises(AttributeError, match="Settings.alpha"):
        fill_section(Settings, {}, "x_", defaults=("alpha", "beta"))


def test_an_option_is_written_in_at_most_three_files():
    """Issue 28's measure: the value (YAML), the declaration (options.py), the code that reads it."""
    found = spread(["recon_drop", "pac_loss", "calib_num"] + list(SECTIONS["recon"][1]) + list(SECTIONS["pac"][1]))
    assert {key: files for key, files in found.items() if len(files) > 3} == {}
    assert "DIV2K_config.yaml" in found["recon_drop"] and "model_utils/options.py" in found["recon_drop"]


def test_the_configuration_stops_near_the_top_of_evaluation():
    """Followed from run_evaluation through the calls that pass it on, the configuration object moves between
    files at most 15 times (issue 28)."""
    flow = ConfigFlow()
    moves = flow.follow("src.engine.evaluate", "run_evaluation", "config")
    assert moves <= 15, flow.moves
    targets = {there for _, there, _ in flow.moves}
    assert "src.engine.sections.evaluation_sections" in targets  # the reader resolves calls across files
    assert not any(t.startswith(("src.engine.checkpoint_eval", "src.engine.file_eval")) for t in targets)


def test_the_generators_check_and_refuse_a_flag_for_a_path(tmp_path, capsys):
    from model_utils import options, options_doc  # pylint: disable=import-outside-toplevel
    from src.utils.readme_block import read_block, write_block  # pylint: disable=import-outside-toplevel
    assert options_doc.main(["--check", os.path.join(ROOT, "docs", "configuration.md")]) == 0
    page = tmp_path / "page.md"
    page.write_text("# t\n<!-- options:begin -->\nold\n<!-- options:end -->\ntail\n", encoding="utf-8")
    assert options_doc.main(["--check", str(page)]) == 1
    assert options_doc.main([str(page)]) == 0 and options_doc.main(["--check", str(page)]) == 0
    assert read_block(str(page), "options") == options_doc.option_lines() and page.read_text().endswith("tail\n")
    assert write_block(str(page), "other", ["x"]) is False and read_block(str(page), "other") is None
    capsys.readouterr()
    for main in (options.main, options_doc.main):
        assert main(["--help"]) == 2 and main(["a", "b"]) == 2
        assert capsys.readouterr().err.startswith("usage: python -m model_utils.")
    assert not os.path.exists("--help")
    yaml_copy = tmp_path / "c.yaml"
    assert options.main([str(yaml_copy)]) == 0 and options.main(["--check", str(yaml_copy)]) == 0
    yaml_copy.write_text(yaml_copy.read_text().replace("scale: 2\n", "scale: 3\n"))
    assert options.main(["--check", str(yaml_copy)]) == 1
