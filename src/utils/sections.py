"""Filling a typed configuration section: a frozen dataclass whose fields are configuration keys (not to be
confused with :mod:`model_utils.sections`, which groups the keys for `--help`)."""
from dataclasses import fields


def dataclass_from_config(cls, config):
    """``cls`` with each field read from ``config`` (any object with the keys as attributes; lists
    become tuples, so a section is hashable). No default is written here: a missing key is an
    ``AttributeError``, as every key comes from ``DIV2K_config.yaml`` or a file checked against it."""
    values = {}
    for f in fields(cls):
        value = getattr(config, f.name)
        values[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)
