"""Model-zoo configuration: YAML defaults + command-line overrides.

The YAML file (``--config_path``) may hold up to three documents:
1. the configuration (flat keys; nested mappings are kept but not overridable),
2. optional help strings ``{key: text}`` shown by ``--help``,
3. optional allowed values ``{key: [choices]}``.

Every scalar key can be overridden as ``--key value``; list keys take
comma-separated values (``--eval_datasets Set5,Set14``); booleans accept
True/False/1/0/yes/no. Unknown keys are rejected with the list of valid ones.

Every value is checked once, here, against the rule table in
:mod:`model_utils.validate` (type, range or choices; YAML and command-line values
coerced alike), and every problem is one line naming the option and what is allowed.
"""
import argparse
import ast
import os
import sys

import yaml

from model_utils.options import ALIASES, ENTRY_SECTIONS, RETIRED, SECTIONS, section_of
from model_utils.validate import RULES, ConfigError, needs_problems, suggest, validate
from src.errors import InputNotFoundError, UserError

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(PROJECT_ROOT, "DIV2K_config.yaml")


class Config:
    """Attribute access over a configuration dict; ``cli_keys`` lists keys set on the command line."""

    def __init__(self, values, cli_keys=(), path=None, spelled=None):
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "cli_keys", frozenset(cli_keys))
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "spelled", dict(spelled or {}))

    def option(self, key):
        """The command-line option of ``key`` as the user wrote it (an old alias such as ``--file_name``)."""
        return self.spelled.get(key, f"--{key}")

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
        return Config(values, self.cli_keys | set(updates), self.path, self.spelled)

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


class _UniqueKeyLoader(yaml.SafeLoader):  # pylint: disable=too-many-ancestors
    """SafeLoader that refuses a key written twice in one mapping (PyYAML silently keeps the last) and any
    alias (``*name``): a few nested aliases in a few hundred bytes expand to gigabytes once the values
    are copied or printed (a 'billion laughs' file), and no configuration needs them."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.events.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, f"the alias *{str(event.anchor)[:40]} is not read (aliases "
                                              "can expand to gigabytes); write the value out", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' is written twice (the first value would be ignored)",
                    key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _read_documents(path):
    """The non-empty YAML documents of ``path``; every problem is a one-line error naming the file."""
    if os.path.isdir(path):
        raise ConfigError(f"config file {path} is a folder; pass a YAML file as --config_path")
    if not os.path.isfile(path):
        raise InputNotFoundError(f"config file not found: {path} (pass --config_path)")
    try:
        with open(path, "r", encoding="utf-8") as fh:
            return [d for d in yaml.load_all(fh, Loader=_UniqueKeyLoader) if d is not None]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        raise ConfigError(f"config file {path}: YAML error{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: YAML error: {' '.join(str(exc).split())}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text; save it as UTF-8 YAML") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}") from None


def _load(path, _seen=()):
    """(config, help, choices, self_describing) of a config file, ``_base_`` resolved."""
    docs = _read_documents(path)
    if not docs or not isinstance(docs[0], dict):
        raise ConfigError(f"{path}: the first YAML document must be a mapping of config keys")
    if len(docs) > 3:
        raise ConfigError(f"{path}: at most 3 YAML documents (config, help, choices), found {len(docs)}")
    for index, what in ((1, "help strings"), (2, "allowed values")):
        if len(docs) > index and not isinstance(docs[index], dict):
            raise ConfigError(f"{path}: YAML document {index + 1} must be a mapping of {what}")
    not_text = [repr(k) for k in docs[0] if not isinstance(k, str)]
    if not_text:
        raise ConfigError(f"{path}: config keys must be names, not {', '.join(not_text)}")
    cfg = dict(docs[0])
    helper = docs[1] if len(docs) > 1 else {}
    choices = docs[2] if len(docs) > 2 else {}
    self_describing = len(docs) > 1
    base = cfg.pop("_base_", None)
    if base is None:
        return cfg, helper, choices, self_describing
    base_path = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(path)), str(base)))
    if not os.path.isfile(base_path):
        raise InputNotFoundError(f"{path}: _base_: {base} is not a file ({base_path}; _base_ is taken from the "
                                 "folder of the file that names it)")
    if base_path in _seen:
        raise ConfigError(f"{path}: _base_ chain loops back to {base_path}")
    base_cfg, base_help, base_choices, _ = _load(base_path, _seen + (base_path,))
    unknown = sorted(set(cfg) - set(base_cfg))
    if unknown:
        hints = "".join(suggest(k, base_cfg) for k in unknown)
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}{hints} (not in its base {base}); "
                          f"valid keys: {', '.join(sorted(base_cfg))}")
    return dict(base_cfg, **cfg), dict(base_help, **helper), dict(base_choices, **choices), self_describing


def load_yaml(path, _seen=()):
    """Return (config, help, choices) from a 1-3 document YAML file.

    A file whose config holds ``_base_: other.yaml`` (relative to the file) is a
    preset: it starts from that file's config, help and choices and overrides
    only the keys it lists, each of which must exist in the base. A missing file
    raises ``FileNotFoundError``; a YAML syntax error, a key written twice, an
    unknown key of a preset or a malformed document raises :class:`ConfigError`
    (a ``ValueError``), each with one line naming the file.
    """
    cfg, helper, choices, _ = _load(path, _seen)
    return cfg, helper, choices


def _check_keys(cfg, path, schema, schema_path, complete):
    """Refuse keys of ``path`` unknown to ``schema`` (the config of ``schema_path``), and with
    ``complete`` keys it lacks; returns the keys it lacks (without ``complete``), ``[]`` when none."""
    name = os.path.basename(schema_path)
    unknown = sorted(set(cfg) - set(schema))
    if unknown:
        hints = "".join(suggest(k, schema) for k in unknown)
        raise ConfigError(f"config file {path}: unknown key(s) {', '.join(unknown)}{hints}; the keys are those of "
                          f"{name} ({schema_path}): see --help")
    missing = [k for k in schema if k not in cfg]
    if missing and complete:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        raise ConfigError(f"config file {path} lacks {len(missing)} key(s) of {name}: {shown}; start it with "
                          f"'_base_: {schema_path}' to take the defaults for the keys it does not set")
    return missing


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line (``error: ...``, exit 2) instead of the full usage."""

    def error(self, message):
        _fail(f"{' '.join(str(message).split())} (see --help)")


MAX_ERROR_CHARS = 600  # a value quoted in an error is cut: a huge value must not make a huge "line"


def _fail(message):
    message = str(message)
    if len(message) > MAX_ERROR_CHARS:
        message = message[:MAX_ERROR_CHARS] + f"... ({len(message)} characters; cut)"
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _parse_unruled(key, default, text):
    """Command-line text of a key without a rule in RULES: typed like its default (as before the table)."""
    parse = _list_parser(default) if isinstance(default, list) else _scalar_parser(default)
    try:
        return parse(text)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        raise ConfigError(f"--{key} {text}: {exc}") from None


def _attach_dash_values(argv, options):
    """``--lr -1e-3`` -> ``--lr=-1e-3``: argparse takes only plain negative numbers as values, so a value
    like ``-inf`` or ``-1e-3`` would otherwise read as an unknown option; the rules then judge it."""
    out, i = [], 0
    while i < len(argv):
        token = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if token in options and nxt is not None and nxt.startswith("-") and not nxt.startswith("--") \
                and nxt != "-h":
            out.append(f"{token}={nxt}")
            i += 2
            continue
        out.append(token)
        i += 1
    return out


def _retire_keys(cfg, path, aliases):
    """Old keys written in a config file (an older copy of the defaults): ``file_name`` becomes the
    entry script's ``export_file`` / ``model_file``, or is dropped where it meant nothing."""
    for old in RETIRED:
        if old not in cfg:
            continue
        value = cfg.pop(old)
        if value in ("", None):
            continue
        for new in aliases.get(old, ()):
            cfg[new] = value
        if aliases.get(old):
            print(f"notice: {old} in {path} is now {' / '.join(aliases[old])}; using it as such")


def _rename_aliases(argv, aliases):
    """``--file_name X`` -> ``--export_file X`` (export.py) / ``--model_file X`` (infer.py), with a notice;
    returns (argv, {new key: the option as written}) so messages can name what the user typed."""
    out, spelled, pending = [], {}, None
    for token in argv:
        if pending is not None:  # the value of an alias naming several keys
            out += [item for new in pending for item in (f"--{new}", token)]
            pending = None
            continue
        name, eq, value = token.partition("=")
        news = aliases.get(name[2:]) if name.startswith("--") else None
        if not news:
            out.append(token)
            continue
        print(f"notice: {name} is now {' / '.join('--' + n for n in news)}; {name} still works")
        spelled.update({new: name for new in news})
        if eq or len(news) == 1:
            out += [f"--{new}{eq}{value}" for new in news]
        else:
            pending = news
    if pending is not None:  # no value: let the parser say so for the first key
        out.append(f"--{pending[0]}")
    return out, spelled


def _add_options(parser, cfg, helper, entry):
    """One ``--key`` per overridable key; with ``entry``, the help lists that script's sections only
    (in groups titled by section) and the other keys are accepted but not listed. Returns the keys."""
    shown_sections = ENTRY_SECTIONS.get(entry)
    groups = {}
    overridable = []
    for key, default in cfg.items():
        if isinstance(default, dict):
            continue
        section = section_of(key)
        if shown_sections is not None and section is not None and section not in shown_sections:
            target, text = parser, argparse.SUPPRESS
        else:
            if section is not None and shown_sections is not None:
                if section not in groups:
                    groups[section] = parser.add_argument_group(SECTIONS[section][0])
                target = groups[section]
            else:
                target = parser
            shown = ",".join(map(str, default)) if isinstance(default, list) else default
            shown = '""' if shown == "" else shown
            rule = RULES.get(key)
            allowed = f"; {rule.allowed()}" if rule is not None else ""
            text = f"{helper.get(key, '')} (default: {shown}{allowed})".strip()
        target.add_argument(f"--{key}", type=str, default=argparse.SUPPRESS, help=text, metavar=key.upper())
        overridable.append(key)
    return overridable


def get_config(argv=None, default_path=DEFAULT_CONFIG, description=None, schema_path=None, entry=None,
               needs=True):
    """Parse ``argv`` (default ``sys.argv[1:]``) into a validated :class:`Config`.

    Every value, from the file or the command line, passes its rule in
    :data:`model_utils.options.RULES` (types coerced the same way for both; see that
    module). The config file's keys must be a subset of the project's
    ``DIV2K_config.yaml`` keys, except that a self-describing file (one with its own help /
    allowed-values documents, like ``DIV2K_config.yaml`` itself) is its own schema. Given
    ``needs``: refuse options ``entry`` would not read (:data:`model_utils.options.NEEDS`); scripts that
    reuse an entry's sections with their own method lists (``--methods``) pass False. Given
    ``schema_path`` (the entry scripts pass ``DEFAULT_CONFIG``), no file may hold a key that
    file lacks; a partial file is told to start with ``_base_:``, and a full copy (with its
    own help/choices documents) made before keys were added gets their defaults, with a notice.

    Raises ``FileNotFoundError`` (no config file) or :class:`ConfigError` (unreadable or
    malformed file, unknown or missing keys). A bad option or value prints one line
    ``error: ...`` naming the option and the allowed values and exits with code 2.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    aliases = ALIASES.get(entry, {})
    argv, spelled = _rename_aliases(argv, aliases)
    pre = _Parser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config_path", default=default_path,
                     help="YAML file of the options (the shipped defaults, a preset in configs/, or your copy)")
    known, _ = pre.parse_known_args(argv)
    cfg, helper, choices, self_describing = _load(known.config_path)
    _retire_keys(cfg, known.config_path, aliases)
    schema = schema_path or (None if self_describing else DEFAULT_CONFIG)
    shipped = None  # the shipped defaults, when loaded here as the schema (a preset's choices are read against them)
    if schema and os.path.abspath(known.config_path) != os.path.abspath(schema):
        base_cfg, base_help, base_choices, _ = _load(schema)
        if os.path.abspath(schema) == os.path.abspath(DEFAULT_CONFIG):
            shipped = base_cfg
        # a full copy of the defaults (it has their help/choices documents) made before keys were added
        # takes the new keys' defaults; a partial file must say '_base_:' (checked as complete)
        complete = schema_path is not None and not self_describing
        missing = _check_keys(cfg, known.config_path, base_cfg, schema, complete=complete)
        if missing and schema_path is not None:
            cfg.update({k: base_cfg[k] for k in missing})
            helper = dict(base_help, **helper)
            choices = dict(base_choices, **choices)
            print(f"notice: {known.config_path} lacks {', '.join(missing)} (keys added to "
                  f"{os.path.basename(schema_path)} after it was copied?); using their defaults")

    epilog = None if entry is None else (
        "Options of the other entry scripts' sections are accepted, have no effect here and are named in one "
        "note line; python -m model_utils.validate lists every option.")
    parser = _Parser(description=description, parents=[pre], allow_abbrev=False, epilog=epilog,
                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    overridable = _add_options(parser, cfg, helper, entry)
    args, unknown = parser.parse_known_args(_attach_dash_values(argv, {f"--{k}" for k in overridable}))
    if unknown:
        bad = [u for u in unknown if u.startswith("--")] or unknown
        hints = "".join(_hint(u.lstrip("-").split("=")[0], overridable, entry) for u in bad if u.startswith("--"))
        hints = hints.replace("(did you mean ", "(did you mean --")
        listing = ("--help lists the options" if hints else f"valid keys: {', '.join(sorted(overridable))}")
        _fail(f"unknown option(s) {' '.join(bad)}{hints}; {listing}")
    overrides = {k: v for k, v in vars(args).items() if k != "config_path"}
    values = dict(cfg)
    origin = {k: os.path.basename(known.config_path) for k in cfg}
    try:
        for key, text in overrides.items():
            values[key] = text if key in RULES else _parse_unruled(key, cfg[key], text)
            origin[key] = "cli"
        validate(values, origin, choices)
        for problem in needs_problems(values, overrides.keys(), entry) if needs else ():
            raise ConfigError(problem)
        values["config_path"] = known.config_path
        if entry is not None:
            adopt_model_from_file(values, set(overrides), _preset_keys(cfg, known.config_path, shipped), entry)
        resolve_model_defaults(values)
    except UserError as exc:  # ConfigError, and resolve_model_defaults' errors
        _fail(str(exc))
    if entry is not None:
        _note_foreign_options(entry, overrides.keys())
    return Config(values, cli_keys=overrides.keys(), path=known.config_path, spelled=spelled)


# words users write for an entry script's output or input file: each entry's own option for it
_OUTPUT_WORDS = ("output_file", "out_file", "outfile", "output", "out", "output_name", "save_path", "save_file")
_INPUT_WORDS = ("checkpoint", "ckpt", "ckpt_path", "weights", "model_path", "pretrained", "pre_train", "resume_from")
_MEANT = {
    "export": dict.fromkeys(_OUTPUT_WORDS, "export_file") | dict.fromkeys(_INPUT_WORDS, "pre_trained"),
    "eval": dict.fromkeys(_OUTPUT_WORDS, "result_file") | dict.fromkeys(_INPUT_WORDS, "pre_trained"),
    "infer": dict.fromkeys(_OUTPUT_WORDS, "output_path") | dict.fromkeys(_INPUT_WORDS, "model_file"),
    "train": dict.fromkeys(_OUTPUT_WORDS, "ckpt_dir") | dict.fromkeys(_INPUT_WORDS, "pre_trained"),
}


def _hint(key, overridable, entry):
    """' (did you mean X?)' for an unknown option: the entry script's own option for a common word
    (``--output_file`` is export.py's ``--export_file``), else the closest of the entry's own options,
    else the closest of all."""
    meant = _MEANT.get(entry, {}).get(key.lower())
    if meant in overridable:
        return f" (did you mean {meant}?)"
    own_sections = ENTRY_SECTIONS.get(entry)
    if own_sections is not None:
        own = [k for k in overridable if section_of(k) in own_sections]
        hint = suggest(key, own)
        if hint:
            return hint
    return suggest(key, overridable)


def _note_foreign_options(entry, given):
    """One line naming the given options that ``entry`` does not read (another entry script's section)."""
    own = set(ENTRY_SECTIONS.get(entry, ()))
    foreign = sorted(k for k in given if section_of(k) not in own and section_of(k) is not None)
    if foreign:
        readers = sorted({e for k in foreign for e, secs in ENTRY_SECTIONS.items() if section_of(k) in secs})
        print(f"note: {', '.join('--' + k for k in foreign)} {'has' if len(foreign) == 1 else 'have'} no effect in "
              f"{entry}.py (read by {', '.join(r + '.py' for r in readers)}); ignored")


def _preset_keys(cfg, path, shipped=None):
    """Keys a config file other than the shipped defaults sets to another value (a preset's choice);
    ``shipped``: the shipped defaults when already loaded (else read here)."""
    if os.path.abspath(path) == os.path.abspath(DEFAULT_CONFIG):
        return set()
    shipped = shipped if shipped is not None else _load(DEFAULT_CONFIG)[0]
    return {k for k, v in cfg.items() if k in shipped and v != shipped[k]}


def adopt_model_from_file(values, typed, preset, entry):
    """Take model, variant, scale, colours and the family options from the checkpoint (or, for
    ``train.py --resume True``, the training state) the run will read, where no value is given (``typed``:
    the keys set on the command line, ``preset``: those a preset sets); a given value that contradicts the
    file is refused (ConfigError naming both). ``--model auto`` and ``--n_colors 0`` count as not given."""
    from src.paths import locate  # pylint: disable=import-outside-toplevel
    from src.weights.model_from_file import model_keys_from_file  # pylint: disable=import-outside-toplevel
    typed_values = {values[key] for key in typed if isinstance(values.get(key), str)}
    given = set(typed) | set(preset)
    path, found = model_keys_from_file(
        values, lambda p: locate(p, values["config_path"], p in typed_values), entry)
    if not found:
        return
    described = f"{found.get('model', '?')}-{found.get('variant', '?')} x{found.get('scale', '?')}"
    for key, recorded in found.items():
        if key not in values:
            continue
        typed = values[key]
        unset = (key == "model" and typed == "auto") or (key == "variant" and typed == "auto") or \
            (key == "n_colors" and typed == 0)
        if key in given and not unset:
            same = str(typed).lower() == str(recorded).lower() if key in ("model", "variant") else \
                str(typed) == str(recorded)
            if not same:
                raise ConfigError(f"--{key} {typed} contradicts {path}, which holds {described} ({key} {recorded}); "
                                  f"drop --{key} (the file says which model it is) or pass another file")
            continue
        try:
            values[key] = validate({key: recorded})[key]
        except ConfigError:  # a damaged entry: the checkpoint loader refuses it, naming what is allowed
            continue


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
            raise UserError(f"--model auto: no default model for scale {values.get('scale')} in default_models; "
                             "pass --model and --variant")
        model, _, chosen_variant = str(entry).partition("/")
        values["model"] = model
    if variant == "auto":
        values["variant"] = chosen_variant or (values.get("default_variants") or {}).get(model, "")
