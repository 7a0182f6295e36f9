"""Model registry: build any network by ``model`` + ``variant`` + ``scale`` (+ ``form``).

Each family registers itself once, in its own file (:func:`~src.models.family.register_family`);
everything here is derived from those records.

| model    | file      | variants                                     | training form       | deploy form |
|----------|-----------|----------------------------------------------|---------------------|-------------|
| abpn     | abpn.py   | M4C28 (default), any M<m>C<c>                | ABPN                | ABPN        |
| abpn_et  | et.py     | M4C28, any M<m>C<c>                          | -                   | PlainSR (ET of ABPN) |
| edsr     | edsr.py   | baseline (default), full                     | EDSR                | EDSR        |
| etds     | etds.py   | M5C16/T, M4C32/S (default), M6C32/M, M7C48/L | ETDS (dual stream)  | ETDSPlain   |
| ecbsr    | ecbsr.py  | M4C8, M4C16 (default), M4C32, M10C32, M16C64 | ECBSR (ECBs)        | ECBSRPlain  |
| ecbsr_et | et.py     | M4C16, any M<m>C<c>                          | -                   | PlainSR (ET of ECBSR) |
| sesr     | sesr.py, adder.py | M3, M5 (default), M7, M11, XL        | SESR (expanded / collapsed / collapsed_adder) | SESRDeploy |

``form="deploy"`` (the default) is what evaluation and export use; training
builds ``form="train"`` and :func:`to_deploy` converts. Family options
(``n_colors``, ``act``, ``linear_block_type``, ``feature_size``, ``adder_eta``) are
passed only to the families that take them. Every network built here carries a
:class:`~src.models.base.ModelSpec` (``net.spec``).
"""
# the family files register themselves on import; this order fixes the order of OPTION_KEYS
from src.models import abpn, ecbsr, edsr, etds, et, sesr  # noqa: F401  pylint: disable=unused-import
from src.models.base import ModelSpec
from src.models.common import block_sizes, parse_mc_variant
from src.models.family import FAMILIES, N_COLORS_CHOICES, choice_rule
from src.errors import UserError

SUPPORTED_SCALES = (2, 3, 4)
FORMS = ("train", "deploy")
#: Every family option, in the order checkpoints record them.
OPTION_KEYS = tuple(dict.fromkeys(key for fam in FAMILIES.values() for key in fam.options))
#: option -> rule(value) giving None when allowed, else the allowed values in words.
OPTION_RULES = {"n_colors": choice_rule(N_COLORS_CHOICES)}
for _fam in FAMILIES.values():
    OPTION_RULES.update(_fam.option_rules)
#: Bounds of an 'M<blocks>C<channels>' variant name.
MAX_MC_BLOCKS, MAX_MC_CHANNELS = 100, 1024


def list_models():
    """Registered family names (``create_model``'s ``model`` values), sorted."""
    return sorted(FAMILIES)


def list_variants(model):
    """The named variants of ``model``, sorted (ValueError for an unknown model)."""
    return sorted(family(model).variants)


def default_variant(model):
    """The variant ``model`` builds when none is given (ValueError for an unknown model)."""
    return family(model).default_variant


def default_variants():
    """``{model: default variant}`` of every family."""
    return {name: fam.default_variant for name, fam in FAMILIES.items()}


def family(model):
    """The :class:`~src.models.family.Family` record of ``model``; ValueError naming the choices otherwise."""
    key = str(model).lower()
    if key not in FAMILIES:
        raise UserError(f"unknown model '{model}'; choose one of {list_models()}")
    return FAMILIES[key]


def family_options(model, options):
    """Family defaults overridden by the given options the family takes (None, '' and 0 mean 'default')."""
    fam = family(model)
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
    """Build a network (an :class:`~src.models.base.SRNet` carrying its ``spec``); ``variant`` None/''
    selects the family default.

    Raises ``ValueError`` (one line) for an unsupported scale or form, an unknown model, or a
    variant that is neither named by the family nor a bounded ``M<blocks>C<channels>``.
    """
    scale = int(scale)
    if scale not in SUPPORTED_SCALES:
        raise UserError(f"scale {scale} is not supported; choose one of {SUPPORTED_SCALES}")
    if form not in FORMS:
        raise UserError(f"form must be 'train' or 'deploy', not '{form}'")
    fam = family(model)
    builder = fam.builder(form)
    if builder is None:
        raise UserError(f"model '{model}' has only a deploy form")
    variant = variant or fam.default_variant
    if _is_mc(variant) and not variant_allowed(model, variant):  # M4C100000 would take all memory
        raise UserError(f"--variant {variant} is not a {model} variant; allowed: {allowed_variants(model)}")
    opts = family_options(model, options)
    net = builder(variant, scale, **opts)
    net.spec = ModelSpec.of(fam.name, variant, scale, form, opts)
    return net


def allowed_variants(model):
    """Words for the variants ``model`` accepts (for messages)."""
    fam = family(model)
    named = ", ".join(sorted(fam.variants) + sorted(fam.aliases))
    return named + (f" or any M<1..{MAX_MC_BLOCKS}>C<1..{MAX_MC_CHANNELS}>" if fam.any_mc else "")


def variant_allowed(model, variant):
    """True when ``variant`` names a variant of ``model`` (named, alias or a bounded 'M<m>C<c>')."""
    fam = family(model)
    text = str(variant)
    if text.upper() in {str(v).upper() for v in fam.variants} or text.upper() in fam.aliases:
        return True
    if not fam.any_mc:
        return False
    try:
        sizes = block_sizes(text, {}, str(model))
    except ValueError:
        return False
    return 1 <= sizes["num_block"] <= MAX_MC_BLOCKS and 1 <= sizes["num_feat"] <= MAX_MC_CHANNELS


def option_problem(key, value):
    """None when ``value`` is allowed for family option ``key``, else the words for what is allowed.

    ``""`` and ``0`` mean "the family default" (as in :func:`family_options`) and are allowed for every key.
    """
    if isinstance(value, (str, int, float)) and not isinstance(value, bool) and value in ("", 0):
        return None
    if key in OPTION_RULES:
        return OPTION_RULES[key](value)
    return f"one of the option keys {', '.join(OPTION_KEYS)}"


def input_weight_name(model, form):
    """Name of the parameter of ``model``'s ``form`` ('train' or 'deploy') whose shape[1] is the number of
    image channels (``n_colors``); ValueError for an unknown model."""
    return family(model).input_weight.get(form, "conv_first.weight")


def has_training_form(model):
    """True when ``model`` has a training form distinct in construction from its deploy form; ValueError
    for an unknown model."""
    return family(model).build_train is not None


def to_deploy(net):
    """The deploy form of ``net`` (itself, relabelled, when the family has one network for both forms);
    its ``spec`` is ``net.spec`` with form 'deploy'. A deploy-form network, or one without a ``spec``
    (not built by :func:`create_model`), is returned unchanged; one that is converted is put in eval mode
    (``set_train(False)``) first."""
    if net.spec is None or net.spec.form == "deploy":
        return net
    converter = family(net.spec.model).to_deploy
    if converter is None:
        deployed = net
    else:
        net.set_train(False)
        deployed = converter(net)
    deployed.spec = net.spec.deployed()
    return deployed


def to_equivalent(net, model):
    """``net`` (a deploy-form network of family A) rewritten as family ``model`` whose networks are an
    exact rewrite of A's (``abpn`` -> ``abpn_et``, ``ecbsr`` -> ``ecbsr_et``); same variant, scale and options.

    Raises ValueError when ``model`` is not such a rewrite of ``net``'s family.
    """
    target = family(model)
    source = net.spec.model if net.spec else None
    if target.equivalent_of is None or target.equivalent_of[0] != source:
        raise ValueError(f"model '{model}' is not an equivalent form of '{source}'")
    converted = target.equivalent_of[1](to_deploy(net))
    converted.spec = ModelSpec.of(target.name, net.spec.variant, net.spec.scale, "deploy",
                                  family_options(target.name, net.spec.options))
    return converted

