"""Per-bit-width defaults of dbdc_pac: what ``auto`` resolves to, that docs/quantization.md's table says the
same, that explicit options win, and that recipe equalisation skips a model without conv pairs."""
import os
import re

import numpy as np
import pytest

from model_utils.config import get_config
from src.engine.sections import quantization_of
from src.quantlib import CalibrationConfig, QuantConfig, quantize, recipes

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "quantization.md")
ROWS = {"7-8": 8, "5-6": 6, "2-4": 4}


def _readme_recipes():
    """{bit class: {option: text}} from docs/quantization.md's "Defaults per bit width" table."""
    text = open(README, encoding="utf-8").read()
    section = text.split("## Defaults per bit width", 1)[1].split("\n#", 1)[0]
    lines = [l for l in section.splitlines() if l.startswith("|")]
    header = [c.strip().strip("`") for c in lines[0].strip("|").split("|")]
    table = {}
    for line in lines[2:]:
        cells = [c.strip().strip("`*") for c in line.strip("|").split("|")]
        if cells[0] in ROWS:
            table[ROWS[cells[0]]] = dict(zip(header[1:], cells[1:]))
    return table


def _same(value, text):
    if isinstance(value, bool):
        return text == str(value)
    if isinstance(value, (int, float)):
        return float(text) == pytest.approx(float(value), rel=1e-9)
    return text == value


def test_readme_table_is_the_recipe_table():
    table = _readme_recipes()
    assert set(table) == {8, 6, 4}
    for bits, row in table.items():
        for key in recipes.RECIPE_KEYS:
            assert _same(recipes.RECIPES[bits][key], row[key]), (bits, key, row[key])


@pytest.mark.parametrize("w_bit,a_bit,row", [(8, 8, 8), (6, 6, 6), (4, 4, 4), (4, 8, 4), (8, 0, 8), (5, 7, 6),
                                             (2, 2, 4)])
def test_dbdc_pac_defaults_pick_the_bit_widths_recipe(w_bit, a_bit, row):
    quant = quantization_of(get_config(["--quant_method", "dbdc_pac", "--w_bit", str(w_bit),
                                        "--a_bit", str(a_bit)]))
    want = recipes.RECIPES[row]
    assert quant.calib.equalize == want["equalize"] and quant.calib.equalize_if_pairs
    assert quant.calib.dbdc_p == want["dbdc_p"]
    assert quant.pac.loss == want["pac_loss"] and quant.pac.act_iters == want["pac_act_iters"]
    assert quant.pac.weight_iters == want["pac_weight_iters"]
    assert quant.pac.feature_weight == want["pac_feature_weight"]
    assert f"the {row}-bit recipe" in quant.recipe_note


def test_explicit_options_override_the_recipe_and_other_methods_keep_their_defaults():
    quant = quantization_of(get_config(["--quant_method", "dbdc_pac", "--w_bit", "8", "--a_bit", "8",
                                        "--equalize", "False", "--pac_loss", "l1", "--dbdc_p", "0.001"]))
    assert not quant.calib.equalize and quant.pac.loss == "l1" and quant.calib.dbdc_p == 0.001
    assert "equalize" not in quant.recipe_note and "pac_act_iters" in quant.recipe_note
    for method in ("minmax", "percentile", "omse", "dbdc"):
        quant = quantization_of(get_config(["--quant_method", method, "--w_bit", "4", "--a_bit", "4"]))
        assert not quant.calib.equalize and quant.calib.dbdc_p == recipes.PLAIN["dbdc_p"] and quant.pac is None
        assert quant.recipe_note == ""


def test_auto_is_a_valid_value_and_bad_values_name_the_option(capsys):
    assert get_config(["--pac_loss", "AUTO"]).pac_loss == "auto"
    for argv, message in ((["--pac_loss", "l3"], r"--pac_loss 'l3'.*\['auto', 'l1', 'l2'\]"),
                          (["--dbdc_p", "-1"], r"--dbdc_p -1.*auto or a number"),
                          (["--equalize", "maybe"], r"--equalize maybe.*auto or True or False")):
        with pytest.raises(SystemExit) as exc:
            get_config(argv)
        assert exc.value.code == 2
        assert re.search(message, capsys.readouterr().err), argv


def test_recipe_equalisation_skips_a_model_without_conv_pairs_but_an_explicit_one_is_refused():
    from src.models.registry import create_model  # pylint: disable=import-outside-toplevel
    net = create_model("sesr", "M5", 2, form="deploy", linear_block_type="collapsed_adder")
    assert not list(net.equalization_pairs())
    patches = np.random.default_rng(0).random((4, 1, 12, 12)).astype(np.float32)
    lines = []
    quantize(net, QuantConfig(8, 8), patches, CalibrationConfig("dbdc", equalize=True, equalize_if_pairs=True),
             log=lines.append)
    assert any("declares no conv pairs" in l for l in lines)
    with pytest.raises(ValueError, match="no ReLU/PReLU-separated conv pairs"):
        quantize(net, QuantConfig(8, 8), patches, CalibrationConfig("dbdc", equalize=True))
