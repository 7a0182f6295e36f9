"""Checking a loaded configuration against the declarations, once, when it is loaded.

Every key of ``DIV2K_config.yaml`` is declared in :mod:`model_utils.options` with its rule
(:mod:`model_utils.rules`: type, range or choices; values from a YAML file and from the command
line are coerced alike). ``python -m model_utils.validate`` prints the rule table.

Errors raise :class:`ConfigError` (a :class:`~src.errors.UserError`) whose message is one line:
``--batch_size 0: out of range; batch_size must be an integer in [1, 65536]``.
"""
import difflib

from model_utils.options import NEEDS, RULES, cross_checks
from model_utils.rules import MODEL_FAMILIES, SCALES, Bad, ConfigError, fmt

__all__ = ["MODEL_FAMILIES", "SCALES", "RULES", "NEEDS", "ConfigError", "needs_problems", "validate", "suggest",
           "describe_rules"]


def needs_problems(values, given, entry):
    """One line per rule of :data:`NEEDS` of ``entry`` broken by options in ``given`` (the keys typed on
    the command line): ``--w_bit, --save_quant_ckpt have no effect without --quant_method ...; add ...``."""
    for entries, keys, needed, what, fix in NEEDS:
        typed = [k for k in keys if k in given]
        if entry in entries and typed and not needed(values):
            names = ", ".join(f"--{k}" for k in typed)
            yield (f"{names} {'has' if len(typed) == 1 else 'have'} no effect without {what}; {fix}")


def _shown(value):
    if isinstance(value, (list, tuple)):
        return ",".join(fmt(v) for v in value)
    return fmt(value) if value != "" else "''"


def validate(values, origin=None, extra_choices=None):
    """Coerce and check ``values`` (a dict, changed in place) against :data:`RULES`.

    ``origin`` maps a key to where its value came from (``"cli"`` or a file name) for the
    message; ``extra_choices`` ({key: [choices]}, the YAML's third document) are checked too.
    Keys without a rule are left as they are (a self-describing test config may hold such keys).
    Raises :class:`ConfigError` with one line naming the option, the value and what is allowed.
    """
    origin = origin or {}
    for key, rule in RULES.items():
        if key not in values:
            continue
        raw = values[key]
        try:
            values[key] = rule.coerce(raw)
        except Bad as exc:
            if exc.choice is not None:
                raise ConfigError(f"{_where(key, exc.choice[0], origin.get(key), quote=True)} is not one of "
                                  f"{rule.choices}") from None
            raise ConfigError(f"{_where(key, raw, origin.get(key))}: {exc.reason}; "
                              f"{key} must be {rule.allowed()}") from None
    for key, allowed in (extra_choices or {}).items():
        if key in values and values[key] not in allowed:
            raise ConfigError(f"{_where(key, values[key], origin.get(key), quote=True)} is not one of {allowed}")
    for _, message in cross_checks(values):
        raise ConfigError(message)
    return values


def _where(key, raw, source, quote=False):
    shown = repr(raw) if quote else _shown(raw)
    if source in (None, "cli"):
        return f"--{key} {shown}"
    return f"{key}: {shown} in {source}"


def suggest(key, known):
    """' (did you mean lr?)' for a close match of ``key`` among ``known``, else ''."""
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def describe_rules():
    """The rule table as text lines: ``key: allowed values``."""
    return [f"{key}: {rule.allowed()}" for key, rule in RULES.items()]


if __name__ == "__main__":
    print("\n".join(describe_rules()))
