"""The rule types of configuration values (what :data:`model_utils.options.RULES` is made of).

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

A rule's ``coerce(value)`` returns the typed value or raises :class:`Bad` (the reason completes
"<value>: <reason>"); ``allowed()`` says what is allowed, in the words of ``--help`` and the errors.
"""
import math

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


class Bad(Exception):
    """Internal: a value failed its rule; ``reason`` completes the sentence "<value>: <reason>".

    ``choice`` holds the (typed) value when it is valid but not among a rule's choices.
    """

    def __init__(self, reason, choice=None):
        super().__init__(reason)
        self.reason, self.choice = reason, choice


def fmt(v):
    """Numbers as written by a user (1e-05 stays short), text as is."""
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


class Rule:
    """Base rule: ``coerce(value)`` returns the typed value or raises ``Bad``; ``allowed()`` says what is allowed."""

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
            raise Bad("not an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            if math.isfinite(value) and value.is_integer():
                return int(value)
            raise Bad("not an integer")
        text = str(value).strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            raise Bad("not an integer") from None
        if math.isfinite(number) and number.is_integer():
            return int(number)
        raise Bad("not an integer")

    def coerce(self, value):
        number = self.parse(value)
        if (self.lo is not None and number < self.lo) or (self.hi is not None and number > self.hi):
            raise Bad("out of range")
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
            raise Bad("not a number")
        try:
            number = float(value) if isinstance(value, (int, float)) else float(str(value).strip())
        except ValueError:
            raise Bad("not a number") from None
        if not math.isfinite(number):
            raise Bad("not a finite number")
        if abs(number) > FLOAT32_MAX:  # MindSpore computes in float32: 1e39 would be inf there
            raise Bad("not a finite float32 number (|x| <= 3.4e38)")
        if self.lo is not None and (number < self.lo or (self.lo_open and number == self.lo)):
            raise Bad("out of range")
        if self.hi is not None and (number > self.hi or (self.hi_open and number == self.hi)):
            raise Bad("out of range")
        return number

    def allowed(self):
        lo, hi = self.lo, self.hi
        if lo is not None and hi is not None:
            return f"a number in {'(' if self.lo_open else '['}{fmt(lo)}, {fmt(hi)}{')' if self.hi_open else ']'}"
        if lo is not None:
            return f"a finite number {'>' if self.lo_open else '>='} {fmt(lo)}"
        if hi is not None:
            return f"a finite number {'<' if self.hi_open else '<='} {fmt(hi)}"
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
        raise Bad("not True or False")

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
            raise Bad("a boolean, not text (quote it in YAML)")
        if isinstance(value, (list, dict)):
            raise Bad("not text")
        text = fmt(value) if isinstance(value, float) else str(value)
        if "\x00" in text:
            raise Bad("contains a NUL character")
        if self.required and not text.strip():
            raise Bad("empty")
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
            raise Bad(f"not one of {self.choices}", choice=(value,))
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
            raise Bad("out of range")
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
            raise Bad("a mapping, not a list")
        else:
            items = [value]
        out = []
        for raw in items:
            try:
                out.append(self.item.coerce(raw))
            except Bad as exc:
                raise Bad(f"item '{fmt(raw)}' is {exc.reason}") from None
        if self.required and not out:
            raise Bad("empty")
        if self.increasing and any(b <= a for a, b in zip(out, out[1:])):
            raise Bad("not in increasing order")
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
            raise Bad("not a mapping")
        out = {}
        for k, v in value.items():
            try:
                ck = self.key.coerce(k)
            except Bad as exc:
                raise Bad(f"key '{fmt(k)}' is {exc.reason}") from None
            try:
                out[ck] = self.value.coerce(v)
            except Bad as exc:
                raise Bad(f"value of '{fmt(k)}' ({fmt(v)}) is {exc.reason}") from None
        return out

    def allowed(self):
        return f"a mapping {{{self.key.allowed()}: {self.value.allowed()}}}"


class ModelSpec(Rule):
    """'model/variant' text, e.g. ``sesr/M5``."""

    def coerce(self, value):
        text = Text(required=True).coerce(value)
        model, sep, variant = text.partition("/")
        if not sep or model not in MODEL_FAMILIES or not variant.strip():
            raise Bad("not model/variant")
        return text

    def allowed(self):
        return f"model/variant with model in {list(MODEL_FAMILIES)}"


class Pair(Rule):
    """Exactly two items, each passing ``item`` (``bit_table`` entries: [w_bit, a_bit])."""

    def __init__(self, item):
        self.item = item

    def coerce(self, value):
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise Bad("not a pair [w_bit, a_bit]")
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
        except Bad:
            raise Bad("not N,C,H,W integers") from None
        if len(shape) != 4:
            raise Bad(f"{len(shape)}-D, not 4-D N,C,H,W")
        n, c, h, w = shape
        if not (1 <= n <= MAX_SHAPE_BATCH and c in (1, 3) and 1 <= h <= MAX_SHAPE_SIDE
                and 1 <= w <= MAX_SHAPE_SIDE and n * h * w <= MAX_SHAPE_PIXELS):
            raise Bad("out of range")
        return text

    def allowed(self):
        return (f"empty (1,<n_colors>,360,640) or N,C,H,W with N in [1, {MAX_SHAPE_BATCH}], C 1 or 3, "
                f"H and W in [1, {MAX_SHAPE_SIDE}] and N*H*W <= {MAX_SHAPE_PIXELS}")
