"""Model registry: build any network by ``model`` + ``variant`` + ``scale`` (+ ``form``).

| model    | file                     | variants                                   | training form       | deploy form |
|----------|--------------------------|--------------------------------------------|---------------------|-------------|
| abpn     | abpn.py                  | M4C28 (default), any M<m>C<c>              | ABPN                | ABPN        |
| abpn_et  | etds_plain.py            | M4C28, any M<m>C<c>                        | -                   | PlainSR (ET of ABPN) |
| edsr     | edsr.py                  | baseline (default), full                   | EDSR                | EDSR        |
| etds     | etds.py, etds_plain.py   | M5C16/T, M4C32/S (default), M6C32/M, M7C48/L | ETDS (dual stream) | ETDSPlain   |
| ecbsr    | ecbsr.py, ecbsr_plain.py | M4C8, M4C16 (default), M4C32, M10C32, M16C64 | ECBSR (ECBs)      | ECBSRPlain  |
| ecbsr_et | etds_plain.py            | M4C16, any M<m>C<c>                        | -                   | PlainSR (ET of ECBSR) |
| sesr     | sesr.py, adder.py        | M3, M5 (default), M7, M11, XL              | SESR (expanded / collapsed / collapsed_adder) | SESRDeploy |

``form="deploy"`` (the default) is what evaluation and export use; training
builds ``form="train"`` and :func:`to_deploy` converts. Family options
(``n_colors``, ``act``, ``linear_block_type``, ``feature_size``, ``adder_eta``) are
passed only to the families that take them.
"""
import math

from src.models import abpn, ecbsr, edsr, etds, etds_plain, sesr
from src.models.common import mc_spec, parse_mc_variant

SUPPORTED_SCALES = (2, 3, 4)
OPTION_KEYS = ("n_colors", "act", "linear_block_type", "feature_size", "adder_eta")
FORMS = ("train", "deploy")
#: Allowed values of the family options (what a checkpoint's metadata may declare).
OPTION_CHOICES = {"n_colors": (1, 3), "act": ("prelu", "relu"), "linear_block_type": sesr.BLOCK_TYPES}
#: SESR's linear-block expansion width: 0 (variant default) or 1..MAX_FEATURE_SIZE channels.
MAX_FEATURE_SIZE = 4096
#: Bounds of an 'M<blocks>C<channels>' variant name.
MAX_MC_BLOCKS, MAX_MC_CHANNELS = 100, 1024


class _Family:
    def __init__(self, module, build_train, build_deploy, converter=None, options=("n_colors",), defaults=None,
                 any_mc=True, aliases=None):
        self.variants = module.VARIANTS
        self.any_mc = any_mc  # accepts any 'M<blocks>C<channels>' variant besides the named ones
        self.aliases = aliases or {}
        self.default_variant = module.DEFAULT_VARIANT
        self.build_train = build_train
        self.build_deploy = build_deploy
        self.converter = converter
        self.options = options
        self.defaults = defaults or {}


def _form_builder(module, form):
    return lambda variant, scale, **kw: module.build(variant, scale, form=form, **kw)


_FAMILIES = {
    "abpn": _Family(abpn, abpn.build, abpn.build),
    "abpn_et": _Family(abpn, None, etds_plain.build_abpn_et),
    "edsr": _Family(edsr, edsr.build, edsr.build, any_mc=False),  # takes n_colors only to refuse anything but 3
    "etds": _Family(etds, _form_builder(etds, "train"), _form_builder(etds, "deploy"), etds.to_deploy,
                    aliases=etds_plain.ALIASES),
    "ecbsr": _Family(ecbsr, _form_builder(ecbsr, "train"), _form_builder(ecbsr, "deploy"), ecbsr.to_deploy),
    "ecbsr_et": _Family(ecbsr, None, etds_plain.build_ecbsr_et),
    "sesr": _Family(sesr, _form_builder(sesr, "train"), _form_builder(sesr, "deploy"), sesr.to_deploy,
                    options=OPTION_KEYS, defaults={"n_colors": 1}, any_mc=False),
}

#: The parameter whose input axis (shape[1]) is the image channels, per (family, form); default conv_first.weight.
_INPUT_WEIGHT = {("ecbsr", "train"): "backbone.0.conv3x3.weight", ("ecbsr", "deploy"): "blocks.0.conv.weight",
                 ("sesr", "train"): "input_block.expand.weight"}


def list_models():
    return sorted(_FAMILIES)


def list_variants(model):
    return sorted(_family(model).variants)


def default_variant(model):
    return _family(model).default_variant


def _family(model):
    key = str(model).lower()
    if key not in _FAMILIES:
        raise ValueError(f"unknown model '{model}'; choose one of {list_models()}")
    return _FAMILIES[key]


def family_options(model, options):
    """Family defaults overridden by the given options the family takes (None, '' and 0 mean 'default')."""
    fam = _family(model)
    merged = dict(fam.defaults)
    merged.update({k: v for k, v in (options or {}).items() if k in fam.options and v not in (None, "", 0)})
    return merged


def _is_mc(variant):
    try:
        parse_mc_variant(variant, "")
    except ValueError:
        return False
    return True


def create_model(model, variant=None, scale=2, form="deploy", **options):
    """Build a network Cell; ``variant`` None/'' selects the family default.

    Raises ``ValueError`` (one line) for an unsupported scale or form, an unknown model, or a
    variant that is neither named by the family nor a bounded ``M<blocks>C<channels>``.
    """
    scale = int(scale)
    if scale not in SUPPORTED_SCALES:
        raise ValueError(f"scale {scale} is not supported; choose one of {SUPPORTED_SCALES}")
    if form not in ("train", "deploy"):
        raise ValueError(f"form must be 'train' or 'deploy', not '{form}'")
    fam = _family(model)
    builder = fam.build_train if form == "train" else fam.build_deploy
    if builder is None:
        raise ValueError(f"model '{model}' has only a deploy form")
    variant = variant or fam.default_variant
    if _is_mc(variant) and not variant_allowed(model, variant):  # M4C100000 would take all memory
        raise ValueError(f"--variant {variant} is not a {model} variant; allowed: {allowed_variants(model)}")
    opts = family_options(model, options)
    net = builder(variant, scale, **opts)
    net.model_name = str(model).lower()
    net.variant = str(variant)
    net.form = form
    net.options = opts
    return net


def allowed_variants(model):
    """Words for the variants ``model`` accepts (for messages)."""
    fam = _family(model)
    named = ", ".join(sorted(fam.variants) + sorted(fam.aliases))
    return named + (f" or any M<1..{MAX_MC_BLOCKS}>C<1..{MAX_MC_CHANNELS}>" if fam.any_mc else "")


def variant_allowed(model, variant):
    """True when ``variant`` names a variant of ``model`` (named, alias or a bounded 'M<m>C<c>')."""
    fam = _family(model)
    text = str(variant)
    if text.upper() in {str(v).upper() for v in fam.variants} or text.upper() in fam.aliases:
        return True
    if not fam.any_mc:
        return False
    try:
        spec = mc_spec(text, {}, str(model))
    except ValueError:
        return False
    return 1 <= spec["num_block"] <= MAX_MC_BLOCKS and 1 <= spec["num_feat"] <= MAX_MC_CHANNELS


def option_problem(key, value):
    """None when ``value`` is allowed for family option ``key``, else the words for what is allowed.

    ``""`` and ``0`` mean "the family default" (as in :func:`family_options`) and are allowed for every key.
    """
    if isinstance(value, (str, int, float)) and not isinstance(value, bool) and value in ("", 0):
        return None
    if key in OPTION_CHOICES:
        ok = not isinstance(value, bool) and value in OPTION_CHOICES[key]
        return None if ok else f"one of {', '.join(map(str, OPTION_CHOICES[key]))}; 0 or '' = the family default"
    if key == "feature_size":
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_FEATURE_SIZE
        return None if ok else f"an integer in 0..{MAX_FEATURE_SIZE}; 0 = the variant's default"
    if key == "adder_eta":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
        return None if ok else "a finite number > 0"
    return f"one of the option keys {', '.join(OPTION_KEYS)}"


def input_weight_name(model, form):
    """Name of the parameter whose shape[1] is the number of image channels (``n_colors``)."""
    return _INPUT_WEIGHT.get((str(model).lower(), form), "conv_first.weight")


def has_training_form(model):
    return _family(model).build_train is not None


def to_deploy(net):
    """The deploy form of ``net`` (itself when the family has one form)."""
    if getattr(net, "form", "deploy") == "deploy":
        return net
    fam = _family(net.model_name)
    if fam.converter is None:
        deployed = net
    else:
        net.set_train(False)
        deployed = fam.converter(net)
    deployed.model_name, deployed.variant, deployed.form = net.model_name, net.variant, "deploy"
    deployed.options = dict(getattr(net, "options", {}))
    return deployed


def config_options(config):
    return {k: config.get(k) for k in OPTION_KEYS if config.get(k) is not None}


def create_model_from_config(config, form="deploy"):
    return create_model(config.model, config.variant, config.scale, form=form, **config_options(config))
