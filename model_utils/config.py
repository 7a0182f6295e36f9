"""Model-zoo configuration: YAML defaults + command-line overrides.

The YAML file (``--config_path``) may hold up to three documents:
1. the configuration (flat keys; nested mappings are kept but not overridable),
2. optional help strings ``{key: text}`` shown by ``--help``,
3. optional allowed values ``{key: [choices]}``.

Every scalar key can be overridden as ``--key value``; list keys take
comma-separated values (``--eval_datasets Set5,Set14``); booleans accept
True/False/1/0/yes/no. Unknown keys are rejected with the list of valid ones.
"""
import argparse
import ast
import os
import sys

import yaml

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(PROJECT_ROOT, "DIV2K_config.yaml")


class Config:
    """Attribute access over a configuration dict; ``cli_keys`` lists keys set on the command line."""

    def __init__(self, values, cli_keys=(), path=None):
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "cli_keys", frozenset(cli_keys))
        object.__setattr__(self, "path", path)

    def __getattr__(self, name):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"config has no key '{name}'") from None

    def __setattr__(self, name, value):
        self._values[name] = value

    def __contains__(self, name):
        return name in self._values

    def get(self, name, default=None):
        return self._values.get(name, default)

    def to_dict(self):
        return dict(self._values)

    def replace(self, **updates):
        values = dict(self._values)
        values.update(updates)
        return Config(values, self.cli_keys | set(updates), self.path)

    def __repr__(self):
        return "Config(" + ", ".join(f"{k}={v!r}" for k, v in sorted(self._values.items())) + ")"


def str2bool(text):
    value = str(text).strip().lower()
    if value in ("true", "1", "yes", "y", "on"):
        return True
    if value in ("false", "0", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got '{text}'")


def _scalar_parser(default):
    if isinstance(default, bool):
        return str2bool
    if isinstance(default, int):
        return int
    if isinstance(default, float):
        return float
    if default is None:
        return _auto_scalar
    return str


def _auto_scalar(text):
    """Value for a key whose default is null: int/float/bool if it looks like one, else str."""
    lowered = text.strip().lower()
    if lowered in ("none", "null", ""):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _list_parser(default):
    element = _scalar_parser(default[0]) if default else _auto_scalar

    def parse(text):
        items = [t.strip() for t in str(text).split(",") if t.strip()]
        return [element(t) for t in items]
    return parse


def load_yaml(path, _seen=()):
    """Return (config, help, choices) from a 1-3 document YAML file.

    A file whose config holds ``_base_: other.yaml`` (relative to the file) is a
    preset: it starts from that file's config, help and choices and overrides
    only the keys it lists, each of which must exist in the base.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path} (pass --config_path)")
    with open(path, "r", encoding="utf-8") as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d is not None]
    if not docs or not isinstance(docs[0], dict):
        raise ValueError(f"{path}: the first YAML document must be a mapping of config keys")
    if len(docs) > 3:
        raise ValueError(f"{path}: at most 3 YAML documents (config, help, choices), found {len(docs)}")
    cfg = dict(docs[0])
    helper = docs[1] if len(docs) > 1 else {}
    choices = docs[2] if len(docs) > 2 else {}
    base = cfg.pop("_base_", None)
    if base is None:
        return cfg, helper, choices
    base_path = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(path)), str(base)))
    if base_path in _seen:
        raise ValueError(f"{path}: _base_ chain loops back to {base_path}")
    base_cfg, base_help, base_choices = load_yaml(base_path, _seen + (base_path,))
    unknown = sorted(set(cfg) - set(base_cfg))
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {', '.join(unknown)} (not in its base {base}); "
                         f"valid keys: {', '.join(sorted(base_cfg))}")
    return dict(base_cfg, **cfg), dict(base_help, **helper), dict(base_choices, **choices)


def get_config(argv=None, default_path=DEFAULT_CONFIG, description=None):
    """Parse ``argv`` (default ``sys.argv[1:]``) into a :class:`Config`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config_path", default=default_path)
    known, _ = pre.parse_known_args(argv)
    cfg, helper, choices = load_yaml(known.config_path)

    parser = argparse.ArgumentParser(description=description, parents=[pre], allow_abbrev=False,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    overridable = []
    for key, default in cfg.items():
        if isinstance(default, dict):
            continue
        parse = _list_parser(default) if isinstance(default, list) else _scalar_parser(default)
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        parser.add_argument(f"--{key}", type=parse, default=argparse.SUPPRESS,
                            help=f"{helper.get(key, '')} (default: {shown})".strip(),
                            choices=None, metavar=key.upper())
        overridable.append(key)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        bad = [u for u in unknown if u.startswith("--")] or unknown
        parser.error(f"unknown option(s) {' '.join(bad)} for {os.path.basename(known.config_path)}; "
                     f"valid keys: {', '.join(sorted(overridable))}")
    overrides = {k: v for k, v in vars(args).items() if k != "config_path"}
    values = dict(cfg)
    values.update(overrides)
    for key, allowed in (choices or {}).items():
        if key in values and values[key] not in allowed:
            parser.error(f"--{key} {values[key]!r} is not one of {allowed}")
    values["config_path"] = known.config_path
    try:
        resolve_model_defaults(values)
    except ValueError as exc:
        parser.error(str(exc))
    return Config(values, cli_keys=overrides.keys(), path=known.config_path)


def resolve_model_defaults(values):
    """Replace ``model: auto`` / ``variant: auto`` (in place).

    ``model: auto`` takes the shipped default for the scale from ``default_models``
    (``{scale: "model/variant"}``); ``variant: auto`` then takes that variant, or for
    an explicitly chosen model the family default from ``default_variants``.
    """
    model, variant = str(values.get("model", "")), str(values.get("variant", ""))
    chosen_variant = None
    if model == "auto":
        table = values.get("default_models") or {}
        entry = table.get(values.get("scale")) or table.get(str(values.get("scale")))
        if not entry:
            raise ValueError(f"--model auto: no default model for scale {values.get('scale')} in default_models; "
                             "pass --model and --variant")
        model, _, chosen_variant = str(entry).partition("/")
        values["model"] = model
    if variant == "auto":
        values["variant"] = chosen_variant or (values.get("default_variants") or {}).get(model, "")
