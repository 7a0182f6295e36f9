"""Filling a typed settings object from the loaded configuration, by field name.

A field ``f`` of a dataclass is read from the option ``<prefix>f`` (``ReconConfig.iters`` from
``recon_iters``, ``PaCConfig.act_lr`` from ``pac_act_lr``, ``TrainData.patch_size`` from ``patch_size``):
no hand-written mapping between options and fields, so an option's name is written once, in its
declaration (:mod:`model_utils.options`). Values computed at the edge (a resolved ``auto``, a seed
shared by two sections) are passed as ``given``. A test checks that every option of a section is a
field of the class it fills.
"""
from collections.abc import Mapping
from dataclasses import MISSING, fields

from src.errors import SettingError, UserError


def _read(config, key):
    """(True, value) of option ``key`` in ``config``, else (False, None). ``config``: a mapping, a loaded
    ``Config`` (its options, never its other attributes such as ``path``) or any object with the options
    as attributes."""
    if isinstance(config, Mapping):
        return (True, config[key]) if key in config else (False, None)
    if hasattr(type(config), "__contains__"):  # a loaded Config: ``in`` asks for an option
        return (True, getattr(config, key)) if key in config else (False, None)
    try:
        return True, getattr(config, key)
    except AttributeError:
        return False, None


def _prefixes(prefix):
    """``prefix`` (one text or several) as a tuple."""
    return (prefix,) if isinstance(prefix, str) else tuple(prefix)


def fill_section(cls, config, prefix="", resolved=None, defaults=(), **given):
    """``cls(**values)``: each field from ``given``, else from the option ``<prefix>name`` (``prefix``: one
    text or several tried in order) of ``resolved`` (``{option: value}``, e.g. recipe values replacing
    ``auto``) or ``config``; lists become tuples, so a frozen section is hashable. A field named in
    ``defaults`` keeps the class's default when no option fills it; any other field without an option is
    an ``AttributeError`` (a defect: a settings field no option fills). A
    :class:`~src.errors.SettingError` the class raises about a field filled from an option is raised
    again as a :class:`~src.errors.UserError` naming that option (``--<prefix><field> <value>: ...``)."""
    prefixes = _prefixes(prefix)
    values, options = {}, {}
    for f in fields(cls):
        if f.name in given:
            values[f.name] = given[f.name]
            continue
        for key in (p + f.name for p in prefixes):
            found, value = _read(resolved or {}, key)
            if not found:
                found, value = _read(config, key)
            if found:
                values[f.name] = tuple(value) if isinstance(value, list) else value
                options[f.name] = key
                break
        else:
            if f.name not in defaults or (f.default is MISSING and f.default_factory is MISSING):
                raise AttributeError(f"{cls.__name__}.{f.name}: no option {' or '.join(p + f.name for p in prefixes)} "
                                     "in the configuration")
    try:
        return cls(**values)
    except SettingError as exc:
        if exc.field not in options:
            raise
        key = options[exc.field]
        raise UserError(f"--{key} {exc.value}: {key} must be {exc.requirement}") from exc


def unread_options(cls, keys, prefix=""):
    """The options among ``keys`` (a section's) that no field of ``cls`` reads through ``prefix`` (one or
    several): empty when the class takes the whole section (what the tests check)."""
    names = {p + f.name for f in fields(cls) for p in _prefixes(prefix)}
    return [key for key in keys if key not in names]
