"""Model registry: build any network by ``model`` + ``variant`` + ``scale``.

| model | file            | variants                                  | form |
|-------|-----------------|-------------------------------------------|------|
| abpn  | abpn.py         | M4C28 (default), any M<m>C<c>              | published |
| edsr  | edsr.py         | baseline (default), full                  | published |
| etds  | etds_plain.py   | M5C16/T, M4C32/S (default), M6C32/M, M7C48/L | inference (plain) |
| ecbsr | ecbsr_plain.py  | M4C8, M4C16 (default), M4C32, M10C32, M16C64 | inference (plain) |
"""
from src.models import abpn, ecbsr_plain, edsr, etds_plain

_FAMILIES = {"abpn": abpn, "edsr": edsr, "etds": etds_plain, "ecbsr": ecbsr_plain}
SUPPORTED_SCALES = (2, 3, 4)


def list_models():
    return sorted(_FAMILIES)


def list_variants(model):
    return sorted(_family(model).VARIANTS)


def default_variant(model):
    return _family(model).DEFAULT_VARIANT


def _family(model):
    key = str(model).lower()
    if key not in _FAMILIES:
        raise ValueError(f"unknown model '{model}'; choose one of {list_models()}")
    return _FAMILIES[key]


def create_model(model, variant=None, scale=2, **kwargs):
    """Build a network Cell; ``variant`` None or '' selects the family default."""
    scale = int(scale)
    if scale not in SUPPORTED_SCALES:
        raise ValueError(f"scale {scale} is not supported; choose one of {SUPPORTED_SCALES}")
    family = _family(model)
    net = family.build(variant or family.DEFAULT_VARIANT, scale, **kwargs)
    net.model_name = str(model).lower()
    net.variant = str(variant or family.DEFAULT_VARIANT)
    return net


def create_model_from_config(config):
    return create_model(config.model, config.variant, config.scale)
