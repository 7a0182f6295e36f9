"""Default calibration settings per bit width: what ``--quant_method dbdc_pac`` picks when the
recipe options are left at ``auto``.

The six recipe options and what each does are in the README's Quantization section; the
values below are the ones that measured best at each bit width on the published ABPN-M4C28,
ETDS-M4C32 and ECBSR-M4C16 x3 weights and the shipped SESR-M5 x2 (100 patches from
``../shared/data/train``, Set5 and Set14; table and commands in the README, "Defaults per bit
width"). A value given on the command line or in YAML overrides its ``auto``.

The bit width that selects a recipe is the lower of ``w_bit`` and ``a_bit`` (0 = float counts
as 8): 7-8 bits -> the 8-bit recipe, 5-6 -> the 6-bit one, 2-4 -> the 4-bit one. The first and
last layers stay W8A8 under the default ``int8_scope`` whatever the recipe.

What the measurements said (ABPN x3, dB against float, Set5 / Set14): with the Hessian weight grid
(:mod:`src.quantlib.weight_grid`) the weight steps are already near their best, and PaC's weight
phase moved them away on 100 patches at every bit width (W8A8 -0.016 / -0.029 with it, -0.027
/ -0.018 without; ETDS x3 W8A8 -0.397 -> -0.089; W4A4 Set5 30.78 -> 31.11 without it), so every
row tunes the activation bounds only. Equalisation helps at every width; clipping more
(``dbdc_p`` 1e-3) pays at 4 bits and costs at 8; L2 weights the rare large errors of clipping;
the feature term helps a little at 6-8 bits and costs at 4.

Other methods (``minmax``, ``percentile``, ``omse``, ``dbdc``) resolve ``auto`` to the settings
they always had (no equalisation, DBDC clip fraction 1e-4), so the methods table compares the
observers themselves.
"""

AUTO = "auto"
RECIPE_METHODS = ("dbdc_pac", "dbdc_recon")  # the methods whose ``auto`` takes a row of RECIPES
RECIPE_KEYS = ("equalize", "dbdc_p", "pac_loss", "pac_act_iters", "pac_weight_iters", "pac_feature_weight")

# The observers' own defaults (and PaC's, for the record): what ``auto`` meant before recipes.
PLAIN = {"equalize": False, "dbdc_p": 1e-4, "pac_loss": "l1", "pac_act_iters": 250, "pac_weight_iters": 250,
         "pac_feature_weight": 5.0}

# dbdc_pac, by bit width class (see the module notes for the measurements behind each).
RECIPES = {
    8: {"equalize": True, "dbdc_p": 1e-6, "pac_loss": "l2", "pac_act_iters": 250, "pac_weight_iters": 0,
        "pac_feature_weight": 5.0},
    6: {"equalize": True, "dbdc_p": 1e-4, "pac_loss": "l2", "pac_act_iters": 250, "pac_weight_iters": 0,
        "pac_feature_weight": 5.0},
    4: {"equalize": True, "dbdc_p": 1e-3, "pac_loss": "l2", "pac_act_iters": 250, "pac_weight_iters": 0,
        "pac_feature_weight": 0.0},
}


def bit_class(w_bit, a_bit):
    """8, 6 or 4: the recipe row of a ``w_bit`` / ``a_bit`` pair (0 = float counts as 8)."""
    bits = min(b if b else 8 for b in (w_bit, a_bit))
    return 8 if bits >= 7 else 6 if bits >= 5 else 4


def recipe_for(method, w_bit, a_bit):
    """``{option: value}`` of the six recipe options for ``method`` (a ``--quant_method`` value) at
    ``w_bit`` / ``a_bit``: the bit width's row of :data:`RECIPES` for ``dbdc_pac``, :data:`PLAIN`
    for every other method."""
    return dict(RECIPES[bit_class(w_bit, a_bit)] if method in RECIPE_METHODS else PLAIN)


def resolve(method, w_bit, a_bit, given):
    """``given`` (``{option: value or "auto"}`` for the recipe options) with every ``auto`` replaced by
    :func:`recipe_for`'s value; returns ``(settings, picked)``, ``picked`` the options that were
    ``auto`` (for the log line that says what was chosen)."""
    recipe = recipe_for(method, w_bit, a_bit)
    settings, picked = {}, []
    for key in RECIPE_KEYS:
        value = given.get(key, AUTO)
        if isinstance(value, str) and value == AUTO:
            value = recipe[key]
            picked.append(key)
        settings[key] = value
    return settings, picked


__all__ = ["AUTO", "RECIPE_METHODS", "RECIPE_KEYS", "PLAIN", "RECIPES", "bit_class", "recipe_for", "resolve"]
