"""One table of rules for every configuration key, applied once when the configuration is loaded.

Every key of ``DIV2K_config.yaml`` has a rule in :data:`RULES` (a test enforces it): its type
and its allowed range or choices. Adding a key means adding a rule. ``python -m
model_utils.validate`` prints the table.

Values from a YAML file and from the command line go through the same coercion, so a value
means the same wherever it is written:

========  ===========================================================================================
type      accepted (anything else is refused with a line naming the option and the allowed values)
========  ===========================================================================================
int       an integer, or a number or text that is exactly one (``16``, ``"16"``, ``3.0``, ``1e6``);
          ``3.5``, ``abc`` and booleans are refused
float     a number or numeric text (``1e-4`` is text to YAML 1.1, a number here); NaN and
          infinity are refused everywhere
bool      true/false, or the words True/False/1/0/yes/no/on/off in any case
text      text; a number is taken as its text; YAML null (``key:`` with no value) is ``""``
list      a YAML list, or comma-separated text (``--lr_milestones 1000,2000``); each item is checked
          with the item rule and a bad item is named
mapping   YAML only (``default_models``, ``default_variants``, ``bit_table``)
========  ===========================================================================================

Errors raise :class:`ConfigError` (a ``ValueError``) whose message is one line:
``--batch_size 0: out of range; batch_size must be an integer in [1, 65536]``.
"""
import difflib
import math

from model_utils.sections import SECTIONS
from src.errors import UserError

FLOAT32_MAX = 3.4028234663852886e38  # numpy.finfo(numpy.float32).max
# Model families accepted by --model (besides "auto"); tests check this against src.models.registry.
MODEL_FAMILIES = ("abpn", "abpn_et", "ecbsr", "ecbsr_et", "edsr", "etds", "sesr")
SCALES = (2, 3, 4)
# --input_shape bounds (N,C,H,W): keep an export example within a few GiB of activations.
MAX_SHAPE_BATCH = 64
MAX_SHAPE_SIDE = 8192
MAX_SHAPE_PIXELS = 4096 * 4096  # N * H * W


class ConfigError(UserError):
    """A configuration value or file is invalid; the message (one line) names the option and what is allowed."""


class _Bad(Exception):
    """Internal: a value failed its rule; ``reason`` completes the sentence "<value>: <reason>".

    ``choice`` holds the (typed) value when it is valid but not among a rule's choices.
    """

    def __init__(self, reason, choice=None):
        super().__init__(reason)
        self.reason, self.choice = reason, choice


def _fmt(v):
    """Numbers as written by a user (1e-05 stays short), text as is."""
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


class Rule:
    """Base rule: ``coerce(value)`` returns the typed value or raises ``_Bad``; ``allowed()`` says what is allowed."""

    def coerce(self, value):  # pragma: no cover - overridden
        raise NotImplementedError

    def allowed(self):  # pragma: no cover - overridden
        raise NotImplementedError


class Int(Rule):
    """An integer in [lo, hi] (either end optional)."""

    def __init__(self, lo=None, hi=None):
        self.lo, self.hi = lo, hi

    @staticmethod
    def parse(value):
        if isinstance(value, bool) or value is None:
            raise _Bad("not an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            if math.isfinite(value) and value.is_integer():
                return int(value)
            raise _Bad("not an integer")
        text = str(value).strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            raise _Bad("not an integer") from None
        if math.isfinite(number) and number.is_integer():
            return int(number)
        raise _Bad("not an integer")

    def coerce(self, value):
        number = self.parse(value)
        if (self.lo is not None and number < self.lo) or (self.hi is not None and number > self.hi):
            raise _Bad("out of range")
        return number

    def allowed(self):
        if self.lo is not None and self.hi is not None:
            return f"an integer in [{self.lo}, {self.hi}]"
        if self.lo is not None:
            return f"an integer >= {self.lo}"
        if self.hi is not None:
            return f"an integer <= {self.hi}"
        return "an integer"


class Float(Rule):
    """A finite number with optional bounds; ``lo_open``/``hi_open`` exclude the bound itself."""

    def __init__(self, lo=None, hi=None, lo_open=False, hi_open=False):
        self.lo, self.hi, self.lo_open, self.hi_open = lo, hi, lo_open, hi_open

    def coerce(self, value):
        if isinstance(value, bool) or value is None:
            raise _Bad("not a number")
        try:
            number = float(value) if isinstance(value, (int, float)) else float(str(value).strip())
        except ValueError:
            raise _Bad("not a number") from None
        if not math.isfinite(number):
            raise _Bad("not a finite number")
        if abs(number) > FLOAT32_MAX:  # MindSpore computes in float32: 1e39 would be inf there
            raise _Bad("not a finite float32 number (|x| <= 3.4e38)")
        if self.lo is not None and (number < self.lo or (self.lo_open and number == self.lo)):
            raise _Bad("out of range")
        if self.hi is not None and (number > self.hi or (self.hi_open and number == self.hi)):
            raise _Bad("out of range")
        return number

    def allowed(self):
        lo, hi = self.lo, self.hi
        if lo is not None and hi is not None:
            return f"a number in {'(' if self.lo_open else '['}{_fmt(lo)}, {_fmt(hi)}{')' if self.hi_open else ']'}"
        if lo is not None:
            return f"a finite number {'>' if self.lo_open else '>='} {_fmt(lo)}"
        if hi is not None:
            return f"a finite number {'<' if self.hi_open else '<='} {_fmt(hi)}"
        return "a finite number"


class Bool(Rule):
    """True/False (or 1/0, yes/no, on/off)."""

    TRUE = ("true", "1", "yes", "y", "on")
    FALSE = ("false", "0", "no", "n", "off")

    def coerce(self, value):
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        text = str(value).strip().lower()
        if text in self.TRUE:
            return True
        if text in self.FALSE:
            return False
        raise _Bad("not True or False")

    def allowed(self):
        return "True or False"


class Text(Rule):
    """Text (paths, names, patterns); ``required`` refuses an empty value."""

    def __init__(self, required=False, what="text"):
        self.required, self.what = required, what

    def coerce(self, value):
        if value is None:
            value = ""
        if isinstance(value, bool):
            raise _Bad("a boolean, not text (quote it in YAML)")
        if isinstance(value, (list, dict)):
            raise _Bad("not text")
        text = _fmt(value) if isinstance(value, float) else str(value)
        if "\x00" in text:
            raise _Bad("contains a NUL character")
        if self.required and not text.strip():
            raise _Bad("empty")
        return text

    def allowed(self):
        return f"non-empty {self.what}" if self.required else f"{self.what} (may be empty)"


class Choice(Rule):
    """One of ``choices``, after coercion with ``base`` (text by default)."""

    def __init__(self, choices, base=None):
        self.choices, self.base = list(choices), base or Text()

    def coerce(self, value):
        value = self.base.coerce(value)
        if value not in self.choices:
            raise _Bad(f"not one of {self.choices}", choice=(value,))
        return value

    def allowed(self):
        return f"one of {self.choices}"


class OrAuto(Rule):
    """``auto`` (resolved later, e.g. the per-bit-width calibration recipe) or a value ``inner`` accepts."""

    def __init__(self, inner):
        self.inner = inner
        self.choices = ["auto"] + list(getattr(inner, "choices", []))

    def coerce(self, value):
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        return self.inner.coerce(value)

    def allowed(self):
        return f"auto or {self.inner.allowed()}"


class Bits(Int):
    """Quantization bit width: 2-8, or 0 / 32 for no quantization (as ``check_bits``)."""

    def coerce(self, value):
        bits = self.parse(value)
        if bits not in (0, 32) and not 2 <= bits <= 8:
            raise _Bad("out of range")
        return bits

    def allowed(self):
        return "between 2 and 8 (or 0/32 for no quantization)"


class List(Rule):
    """A list (YAML list or comma-separated text) whose items each pass ``item``."""

    def __init__(self, item, required=False, increasing=False):
        self.item, self.required, self.increasing = item, required, increasing

    def coerce(self, value):
        if value is None:
            items = []
        elif isinstance(value, (list, tuple)):
            items = list(value)
        elif isinstance(value, str):
            items = [t.strip() for t in value.split(",") if t.strip()]
        elif isinstance(value, dict):
            raise _Bad("a mapping, not a list")
        else:
            items = [value]
        out = []
        for raw in items:
            try:
                out.append(self.item.coerce(raw))
            except _Bad as exc:
                raise _Bad(f"item '{_fmt(raw)}' is {exc.reason}") from None
        if self.required and not out:
            raise _Bad("empty")
        if self.increasing and any(b <= a for a, b in zip(out, out[1:])):
            raise _Bad("not in increasing order")
        return out

    def allowed(self):
        order = " in increasing order" if self.increasing else ""
        need = "at least one item" if self.required else "may be empty"
        return f"a comma-separated list, each item {self.item.allowed()}{order} ({need})"


class Mapping(Rule):
    """A YAML mapping whose keys pass ``key`` and values pass ``value``."""

    def __init__(self, key, value):
        self.key, self.value = key, value

    def coerce(self, value):
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise _Bad("not a mapping")
        out = {}
        for k, v in value.items():
            try:
                ck = self.key.coerce(k)
            except _Bad as exc:
                raise _Bad(f"key '{_fmt(k)}' is {exc.reason}") from None
            try:
                out[ck] = self.value.coerce(v)
            except _Bad as exc:
                raise _Bad(f"value of '{_fmt(k)}' ({_fmt(v)}) is {exc.reason}") from None
        return out

    def allowed(self):
        return f"a mapping {{{self.key.allowed()}: {self.value.allowed()}}}"


class ModelSpec(Rule):
    """'model/variant' text, e.g. ``sesr/M5``."""

    def coerce(self, value):
        text = Text(required=True).coerce(value)
        model, sep, variant = text.partition("/")
        if not sep or model not in MODEL_FAMILIES or not variant.strip():
            raise _Bad("not model/variant")
        return text

    def allowed(self):
        return f"model/variant with model in {list(MODEL_FAMILIES)}"


class Pair(Rule):
    """Exactly two items, each passing ``item`` (``bit_table`` entries: [w_bit, a_bit])."""

    def __init__(self, item):
        self.item = item

    def coerce(self, value):
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise _Bad("not a pair [w_bit, a_bit]")
        return [self.item.coerce(v) for v in value]

    def allowed(self):
        return f"[w_bit, a_bit], each {self.item.allowed()}"


class InputShape(Rule):
    """Empty, or N,C,H,W (``x`` also separates) within the export bounds."""

    def coerce(self, value):
        text = Text().coerce(value)
        if not text.strip():
            return text
        parts = [p.strip() for p in text.replace("x", ",").split(",")]
        try:
            shape = [Int.parse(p) for p in parts]
        except _Bad:
            raise _Bad("not N,C,H,W integers") from None
        if len(shape) != 4:
            raise _Bad(f"{len(shape)}-D, not 4-D N,C,H,W")
        n, c, h, w = shape
        if not (1 <= n <= MAX_SHAPE_BATCH and c in (1, 3) and 1 <= h <= MAX_SHAPE_SIDE
                and 1 <= w <= MAX_SHAPE_SIDE and n * h * w <= MAX_SHAPE_PIXELS):
            raise _Bad("out of range")
        return text

    def allowed(self):
        return (f"empty (1,<n_colors>,360,640) or N,C,H,W with N in [1, {MAX_SHAPE_BATCH}], C 1 or 3, "
                f"H and W in [1, {MAX_SHAPE_SIDE}] and N*H*W <= {MAX_SHAPE_PIXELS}")


_PATH = dict(what="path")
_LR = Float(0.0, lo_open=True)

RULES = {
    # ---- device ----
    "enable_modelarts": Bool(),
    "data_url": Text(),
    "checkpoint_url": Text(),
    "train_url": Text(),
    "device_target": Choice(["CPU", "GPU", "Ascend"]),
    "device_id": Int(0, 4095),
    "mode": Choice(["graph", "pynative"]),
    # ---- model ----
    "model": Choice(("auto",) + MODEL_FAMILIES),
    "variant": Text(required=True, what="variant name ('auto' = the default)"),
    "scale": Choice(SCALES, Int()),
    "default_models": Mapping(Choice(SCALES, Int()), ModelSpec()),
    "default_variants": Mapping(Choice(MODEL_FAMILIES), Text(required=True)),
    "pre_trained": Text(**_PATH),
    "pretrained_dir": Text(required=True, **_PATH),
    "n_colors": Choice([0, 1, 3], Int()),
    "act": Choice(["prelu", "relu"]),
    "linear_block_type": Choice(["expanded", "collapsed", "collapsed_adder"]),
    "feature_size": Int(0, 4096),
    "adder_eta": Float(0.0, lo_open=True),
    # ---- data ----
    "data_path": Text(required=True, **_PATH),
    "eval_datasets": List(Text(required=True), required=True),
    "sample_fallback": Bool(),
    "cache_dir": Text(**_PATH),
    # ---- evaluation protocol ----
    "gt_mod": Int(1, 1024),
    "metric_channel": Choice(["y", "rgb"]),
    "shave": Int(-1, 1024),
    # ---- inference ----
    "self_ensemble": Bool(),
    "tile_size": Int(-1),
    "tile_overlap": Int(-1),
    "max_tile_mem_gb": Float(0.0, lo_open=True),
    "pixel_range": Choice(["auto", "1", "255"]),
    # ---- training ----
    "train_path": Text(required=True, **_PATH),
    "patch_size": Int(1, 4096),
    "batch_size": Int(1, 65536),
    "lr": _LR,
    "min_lr": Float(0.0),
    "warmup_steps": Int(0),
    "total_steps": Int(1),
    "val_every": Int(1),
    "val_data_path": Text(required=True, **_PATH),
    "val_datasets": List(Text(required=True)),
    "seed": Int(0, 2 ** 32 - 1),
    "ckpt_dir": Text(required=True, **_PATH),
    "init_from": Text(**_PATH),
    "qat": Bool(),
    "residual_loss_weight": Float(0.0),
    "freeze_residual_steps": Int(0),
    "ema_decay": Float(0.0, 1.0, hi_open=True),
    "max_bad_steps": Int(1),
    "lr_scheduler": Choice(["cosine", "multistep"]),
    "lr_milestones": List(Int(1), increasing=True),
    "lr_gamma": Float(0.0, 1.0, lo_open=True),
    "beta1": Float(0.0, 1.0, hi_open=True),
    "beta2": Float(0.0, 1.0, hi_open=True),
    "amsgrad": Bool(),
    "weight_decay": Float(0.0),
    "clip_grad_norm": Float(0.0),
    "amp_level": Choice(["O0", "O1", "O2", "O3"]),
    "loss_scale": Choice(["auto", "none", "static", "dynamic"]),
    "loss_scale_value": Float(0.0, lo_open=True),
    "num_workers": Int(1, 256),
    "dataset_enlarge_ratio": Int(1),
    "channel_shuffle": Bool(),
    "train_cache_gb": Float(0.0),
    "resume": Bool(),
    "overwrite": Bool(),
    "save_every": Int(0),
    "save_every_minutes": Float(0.0),
    "keep_last_ckpt": Int(1),
    "log_every": Int(1),
    "tensorboard": Bool(),
    # ---- quantization ----
    "quant_method": Choice(["", "minmax", "percentile", "omse", "dbdc", "dbdc_pac", "dbdc_recon"]),
    "w_bit": Bits(),
    "a_bit": Bits(),
    "w_symmetric": Bool(),
    "int8_scope": List(Text(required=True)),
    "fp_scope": List(Text(required=True)),
    "bit_table": Mapping(Text(required=True), Pair(Bits())),
    "calib_path": Text(required=True, **_PATH),
    "calib_num": Int(1, 1_000_000),
    "calib_seed": Int(0, 2 ** 32 - 1),
    "calib_batch": Int(1),
    "equalize": OrAuto(Bool()),
    "weight_grid": Choice(["hessian", "minmax"]),
    "quant_placement": Choice(["auto", "deploy", "ptq4sr"]),
    "input_minmax": Bool(),
    "percentile": Float(0.5, 1.0, lo_open=True),
    "dbdc_p": OrAuto(Float(0.0, 0.5, lo_open=True, hi_open=True)),
    "pac_act_iters": OrAuto(Int(0)),
    "pac_weight_iters": OrAuto(Int(0)),
    "pac_act_lr": Float(0.0),
    "pac_act_lr_min": Float(0.0),
    "pac_weight_lr": Float(0.0),
    "pac_weight_lr_min": Float(0.0),
    "pac_batch": Int(1),
    "pac_hr_patch": Int(1, 4096),
    "pac_feature_weight": OrAuto(Float(0.0)),
    "pac_relative_features": Bool(),
    "pac_loss": OrAuto(Choice(["l1", "l2"])),
    "pac_graph": Bool(),
    "recon_iters": Int(1),
    "recon_block": Int(0),
    "recon_batch": Int(1),
    "recon_round_lr": Float(0.0, lo_open=True),
    "recon_act_lr": Float(0.0),
    "recon_round_weight": Float(0.0),
    "recon_warmup": Float(0.0, 1.0, hi_open=True),
    "recon_drop": Float(0.0, 1.0, hi_open=True),
    "recon_rounding": Bool(),
    "recon_act": Bool(),
    "save_quant_ckpt": Text(**_PATH),
    # ---- outputs ----
    "save_sr": Bool(),
    "output_path": Text(required=True, **_PATH),
    "result_file": Text(**_PATH),
    # ---- export / inference ----
    "file_format": Choice(["MINDIR", "ONNX", "ORT", "TFLITE", "AIR"]),
    "target": Choice(["auto", "mobile", "desktop"]),
    "export_file": Text(**_PATH),
    "input_shape": InputShape(),
    "quant": Choice(["none", "float16", "int8"]),
    "io_dtype": Choice(["float32", "uint8"]),
    "phone_extras": List(Choice(["ort", "float16"])),
    "export_check": Bool(),
    "input_path": Text(**_PATH),
    "model_file": Text(**_PATH),
}


def _cross_checks(values):
    """Rules between keys: yield (option, message) for each violated one."""
    if values.get("lr_scheduler") == "cosine" and "lr" in values and "min_lr" in values \
            and values["min_lr"] > values["lr"]:
        yield "min_lr", (f"--min_lr {_fmt(values['min_lr'])} is above --lr {_fmt(values['lr'])}: the cosine "
                         "schedule would rise; min_lr must be in [0, lr]")
    for key in ("pac_act", "pac_weight"):
        low, high = values.get(f"{key}_lr_min"), values.get(f"{key}_lr")
        if low is not None and high is not None and low > high:
            yield f"{key}_lr_min", (f"--{key}_lr_min {_fmt(low)} is above --{key}_lr {_fmt(high)}; "
                                    f"{key}_lr_min must be in [0, {key}_lr]")
    method, patches = values.get("quant_method"), values.get("calib_num")
    for key, methods in (("pac_batch", ("dbdc_pac", "dbdc_recon")), ("recon_batch", ("dbdc_recon",))):
        if method in methods and isinstance(values.get(key), int) and isinstance(patches, int) \
                and values[key] > patches:
            yield key, (f"--{key} {values[key]} is above --calib_num {patches}: each step draws {key} distinct "
                        f"calibration patches; {key} must be <= calib_num")
    if method == "dbdc_recon" and values.get("recon_rounding") is False and values.get("recon_act") is False:
        yield "recon_rounding", ("--recon_rounding False with --recon_act False leaves nothing to reconstruct "
                                 "(the result would be dbdc_pac's); give one of them True, or use dbdc_pac")
    scale, patch = values.get("scale"), values.get("pac_hr_patch")
    if isinstance(scale, int) and isinstance(patch, int) and patch < scale:
        yield "pac_hr_patch", (f"--pac_hr_patch {patch} is below --scale {scale}: the LR calibration patch "
                               f"would be empty; pac_hr_patch must be >= scale")


def _keys_of(*names):
    """The keys of the named sections (a name that is no section is a key itself)."""
    return tuple(k for name in names for k in (SECTIONS[name][1] if name in SECTIONS else (name,)))


_PAC_METHODS = ("dbdc_pac", "dbdc_recon")
# Options that are read only when another option holds a value, per entry script: (entry, keys, needed(values),
# what is needed, what to do). An option among ``keys`` typed on the command line while ``needed`` is false
# would do nothing, so it is refused (one line naming both; see needs_problems).
NEEDS = (
    (("eval",), tuple(k for k in _keys_of("quantization", "calibration_data", "pac", "recon") if k != "quant_method"),
     lambda v: bool(v.get("quant_method")), "--quant_method (empty: the float model is evaluated)",
     "add --quant_method dbdc_pac (the default calibration; see --help) or drop them"),
    (("export",), _keys_of("quantization", "calibration_data", "pac", "recon", "eval_data", "phone_extras"),
     lambda v: v.get("quant") == "int8", "--quant int8 (they calibrate and score the int8 phone file)",
     "add --quant int8 or drop them"),
    (("eval", "export"), _keys_of("pac"), lambda v: v.get("quant_method") in ("",) + _PAC_METHODS,
     "--quant_method dbdc_pac or dbdc_recon", "pick one of those methods or drop them"),
    (("eval", "export"), _keys_of("recon"), lambda v: v.get("quant_method") in ("", "dbdc_recon"),
     "--quant_method dbdc_recon", "pick it or drop them"),
    (("eval", "export"), ("percentile",), lambda v: v.get("quant_method") in ("", "percentile"),
     "--quant_method percentile", "pick it or drop it"),
    (("eval", "export"), ("dbdc_p",), lambda v: not v.get("quant_method") or v["quant_method"].startswith("dbdc"),
     "--quant_method dbdc, dbdc_pac or dbdc_recon", "pick one of those methods or drop it"),
    (("train",), _keys_of("quantization", "calibration_data", "pac", "recon"), lambda v: bool(v.get("qat")),
     "--qat True (quantization-aware training; a float run reads no quantization option)",
     "add --qat True or drop them"),
    (("train",), ("min_lr",), lambda v: v.get("lr_scheduler") == "cosine", "--lr_scheduler cosine",
     "drop it or use the cosine schedule"),
    (("train",), ("lr_milestones", "lr_gamma"), lambda v: v.get("lr_scheduler") == "multistep",
     "--lr_scheduler multistep", "add --lr_scheduler multistep or drop them"),
    (("train",), ("loss_scale_value",), lambda v: v.get("loss_scale") != "none",
     "a loss scale (--loss_scale static, dynamic or auto)", "drop it or pick a loss scale"),
)


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
        return ",".join(_fmt(v) for v in value)
    return _fmt(value) if value != "" else "''"


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
        except _Bad as exc:
            if exc.choice is not None:
                raise ConfigError(f"{_where(key, exc.choice[0], origin.get(key), quote=True)} is not one of "
                                  f"{rule.choices}") from None
            raise ConfigError(f"{_where(key, raw, origin.get(key))}: {exc.reason}; "
                              f"{key} must be {rule.allowed()}") from None
    for key, allowed in (extra_choices or {}).items():
        if key in values and values[key] not in allowed:
            raise ConfigError(f"{_where(key, values[key], origin.get(key), quote=True)} is not one of {allowed}")
    for _, message in _cross_checks(values):
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
