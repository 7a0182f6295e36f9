"""The record each model family registers once, in its own file (after timm's ``register_model`` +
``default_cfgs`` + ``checkpoint_filter_fn``); :mod:`src.models.registry` derives everything else from them.
"""
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

#: Every registered family by name, in registration order.
FAMILIES = {}

#: Image channels every family may be built with.
N_COLORS_CHOICES = (1, 3)


def choice_rule(choices):
    """Option rule accepting exactly one of ``choices`` (no bools): None when allowed, else the words."""
    def rule(value):
        ok = not isinstance(value, bool) and value in choices
        return None if ok else f"one of {', '.join(map(str, choices))}; 0 or '' = the family default"
    return rule


@dataclass(frozen=True)
class Family:
    """One model family.

    - ``variants``: named variant -> builder keyword arguments; ``aliases``: other names -> a named variant;
      ``any_mc``: any bounded 'M<blocks>C<channels>' is a variant too.
    - ``build_deploy`` / ``build_train`` (None: deploy form only): ``(variant, scale, **options) -> SRNet``;
      ``to_deploy``: training-form net -> equal deploy-form net (None: both forms are the same network).
    - ``options``: the family options the builders take; ``defaults``: those recorded in the spec even
      when not given; ``option_rules``: option -> rule(value) giving None or the allowed values in words.
    - ``input_weight``: form -> the parameter whose shape[1] is ``n_colors`` (default ``conv_first.weight``).
    - ``torch_map``: ``(mapper, net)`` filling our names from a published PyTorch state dict (see
      src/weights/torch_import.py), ``torch_ignore``: name prefixes of that dict with no counterpart.
    - ``tf_map``: ``(convs, net) -> {our name: array}`` from the ordered 3x3 convs of a TensorFlow
      SavedModel or float TFLite file (``convs.assign(names, relu_after)``; see src/weights/tf_import.py).
    - ``equivalent_of``: ``(source family, converter)`` for a family whose networks are an exact
      rewrite of another family's deploy form (the ET forms).
    """

    name: str
    variants: Mapping
    default_variant: str
    build_deploy: Callable
    build_train: Optional[Callable] = None
    to_deploy: Optional[Callable] = None
    options: tuple = ("n_colors",)
    defaults: Mapping = field(default_factory=dict)
    option_rules: Mapping = field(default_factory=dict)
    any_mc: bool = True
    aliases: Mapping = field(default_factory=dict)
    input_weight: Mapping = field(default_factory=dict)
    torch_map: Optional[Callable] = None
    torch_ignore: tuple = ()
    tf_map: Optional[Callable] = None
    equivalent_of: Optional[tuple] = None

    def builder(self, form):
        """The builder of ``form`` ('train' or 'deploy'); None when the family has no such form."""
        return self.build_train if form == "train" else self.build_deploy


def register_family(family):
    """Add ``family`` to :data:`FAMILIES` (ValueError when its name is taken); returns it."""
    if family.name in FAMILIES:
        raise ValueError(f"model family '{family.name}' is registered twice")
    FAMILIES[family.name] = family
    return family
