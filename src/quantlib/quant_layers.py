"""Quantized layers and the conversion of a float model into a fake-quantized one (PTQ4SR placement).

Every ``nn.Conv2d`` (and ``nn.Dense``) becomes a quantized layer that fake-quantizes
its input activation (per tensor, asymmetric) and its weight (per output channel,
symmetric by default). Parameter names stay those of the float model, plus
``<layer>.act_quant.lower/upper`` and ``<layer>.weight_quant.lower/upper``.

Per-layer precision (:class:`QuantConfig`):
- ``int8_scope``: name patterns (fnmatch) kept at W8A8 when ``w_bit`` or ``a_bit`` < 8;
  the token ``first_last`` (default) means the first and the last quantizable layer;
- ``fp_scope``: name patterns left in floating point;
- ``bit_table``: ``{pattern: [w_bit, a_bit]}`` overriding everything else.
A pattern that matches no layer is an error listing the layer names.

``placement`` 'deploy' with its ``sites`` adds the roundings of the full-integer file
(:mod:`src.quantlib.deploy`); 'ptq4sr' (the paper's placement, and every checkpoint made before
the deployment simulation) rounds conv inputs and weights only.
"""
import fnmatch
from dataclasses import dataclass, field
from typing import Dict, List

import numpy as np
from mindspore import Tensor, nn, ops

from src.quantlib.fake_quant import FakeQuant, check_bits
from src.errors import SettingError, UserError


#: ``QuantConfig.placement``: the full-integer file's roundings, or PTQ4SR's (conv inputs and weights)
PLACEMENTS = ("deploy", "ptq4sr")


@dataclass
class QuantConfig:
    """Bit widths (2-8, 0 = float), weight symmetry and per-layer scopes (see the module notes);
    scopes may be given as lists or comma-separated strings. ``ValueError`` for a bad bit width
    or a ``bit_table`` entry that is not ``[w_bit, a_bit]``."""
    w_bit: int = 8
    a_bit: int = 8
    w_symmetric: bool = True
    int8_scope: List[str] = field(default_factory=lambda: ["first_last"])
    fp_scope: List[str] = field(default_factory=list)
    bit_table: Dict[str, list] = field(default_factory=dict)
    placement: str = "ptq4sr"
    sites: List[list] = field(default_factory=list)

    def to_json(self):
        """The settings as a JSON string (stored in a calibrated checkpoint's metadata)."""
        import json  # pylint: disable=import-outside-toplevel
        return json.dumps({"w_bit": self.w_bit, "a_bit": self.a_bit, "w_symmetric": self.w_symmetric,
                           "int8_scope": self.int8_scope, "fp_scope": self.fp_scope,
                           "bit_table": {k: list(v) for k, v in (self.bit_table or {}).items()},
                           "placement": self.placement, "sites": [list(s) for s in self.sites]})

    def __post_init__(self):
        if self.placement not in PLACEMENTS:
            raise SettingError("QuantConfig", "placement", self.placement, f"one of {list(PLACEMENTS)}")
        if not isinstance(self.sites, (list, tuple)):
            raise UserError(f"sites must be a list of [kind, cell, peer], not {self.sites!r}")
        self.sites = [list(s) if isinstance(s, (list, tuple)) else s for s in self.sites]
        self.w_bit = check_bits(self.w_bit, "w_bit")
        self.a_bit = check_bits(self.a_bit, "a_bit")
        self.int8_scope = [s for s in _as_list(self.int8_scope)]
        self.fp_scope = [s for s in _as_list(self.fp_scope)]
        for pattern, bits in (self.bit_table or {}).items():
            if not isinstance(bits, (list, tuple)) or len(bits) != 2:
                raise UserError(f"bit_table['{pattern}'] must be [w_bit, a_bit], not {bits!r}")
            check_bits(bits[0], f"bit_table['{pattern}'] w_bit")
            check_bits(bits[1], f"bit_table['{pattern}'] a_bit")


def _as_list(value):
    if value in (None, "", []):
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


class _QuantMixin:
    def _init_quantizers(self, w_bit, a_bit, w_symmetric, out_channels, weight_size):
        self.act_quant = FakeQuant(a_bit, symmetric=False)
        self.weight_quant = FakeQuant(w_bit, symmetric=w_symmetric, channels=out_channels,
                                      elements_per_bound=weight_size // out_channels)
        self.w_bit, self.a_bit = check_bits(w_bit), check_bits(a_bit)


class QuantConv2d(nn.Conv2d, _QuantMixin):
    """``conv`` (an ``nn.Conv2d``, weights copied) whose NCHW input is fake-quantized per tensor
    (asymmetric, ``a_bit``) and whose (out, in/group, kh, kw) weight per output channel (``w_bit``)."""
    def __init__(self, conv, w_bit, a_bit, w_symmetric=True):
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                         pad_mode=conv.pad_mode, padding=conv.padding, dilation=conv.dilation, group=conv.group,
                         has_bias=conv.has_bias)
        self.weight.set_data(Tensor(conv.weight.asnumpy()))
        if conv.has_bias:
            self.bias.set_data(Tensor(conv.bias.asnumpy()))
        self._init_quantizers(w_bit, a_bit, w_symmetric, conv.out_channels, int(conv.weight.size))
        # deployment simulation (src/quantlib/deploy.py): 1 = own output quantizer, 2 = a reader's
        self.out_mode, self.out_quant, self.round_bias = 0, None, False

    def _int32_bias(self):
        """The bias on the file's int32 grid (step = input step x weight step per output channel)."""
        b_step = self.act_quant.step_ms() * self.weight_quant.step_ms().reshape(-1)
        return self.bias + ops.stop_gradient(ops.floor(self.bias / b_step + 0.5) * b_step - self.bias)

    def construct(self, x):
        out = self.conv2d(self.act_quant(x), self.weight_quant(self.weight))
        if self.has_bias:
            if self.round_bias:  # set with the deployment sites, when input and weights are quantized
                out = self.bias_add(out, self._int32_bias())
            else:
                out = self.bias_add(out, self.bias)
        if self.out_mode > 0:
            out = self.out_quant(out)
        return out


class QuantDense(nn.Dense, _QuantMixin):
    """``dense`` (an ``nn.Dense``, weights copied) with fake-quantized (N, in) input and (out, in) weight."""
    def __init__(self, dense, w_bit, a_bit, w_symmetric=True):
        super().__init__(dense.in_channels, dense.out_channels, has_bias=dense.has_bias)
        self.weight.set_data(Tensor(dense.weight.asnumpy()))
        if dense.has_bias:
            self.bias.set_data(Tensor(dense.bias.asnumpy()))
        self._init_quantizers(w_bit, a_bit, w_symmetric, dense.out_channels, int(dense.weight.size))
        self.weight_quant.lower.set_data(Tensor(np.full((dense.out_channels, 1), -1.0, np.float32)))
        self.weight_quant.upper.set_data(Tensor(np.full((dense.out_channels, 1), 1.0, np.float32)))

    def construct(self, x):
        out = self.matmul(self.act_quant(x), self.weight_quant(self.weight))
        if self.has_bias:
            out = self.bias_add(out, self.bias)
        return out


QUANT_TYPES = (QuantConv2d, QuantDense)


def quantizable_layers(net):
    """``[(name, cell)]`` of the float ``nn.Conv2d`` / ``nn.Dense`` cells of ``net``, in model order."""
    return [(name, cell) for name, cell in net.cells_and_names()
            if isinstance(cell, (nn.Conv2d, nn.Dense)) and not isinstance(cell, QUANT_TYPES)]


def quant_layers(net):
    """``[(name, cell)]`` of the quantized layers (:class:`QuantConv2d`, :class:`QuantDense`) of ``net``."""
    return [(name, cell) for name, cell in net.cells_and_names() if isinstance(cell, QUANT_TYPES)]


def _matches(name, pattern):
    return fnmatch.fnmatchcase(name, pattern)


def layer_bits(names, qcfg):
    """{layer name: (w_bit, a_bit) or None for floating point} for the layer ``names`` (model order)
    under ``qcfg``'s scopes; ``ValueError`` for a pattern that matches no layer."""
    plan = {n: (qcfg.w_bit, qcfg.a_bit) for n in names}
    patterns = []
    if qcfg.w_bit and qcfg.a_bit and (qcfg.w_bit < 8 or qcfg.a_bit < 8) or qcfg.int8_scope != ["first_last"]:
        for pattern in qcfg.int8_scope:
            chosen = [names[0], names[-1]] if pattern == "first_last" else [n for n in names if _matches(n, pattern)]
            if pattern != "first_last":
                patterns.append(("int8_scope", pattern, chosen))
            for n in chosen:
                plan[n] = (8, 8)
    for pattern in qcfg.fp_scope:
        chosen = [n for n in names if _matches(n, pattern)]
        patterns.append(("fp_scope", pattern, chosen))
        for n in chosen:
            plan[n] = None
    for pattern, bits in (qcfg.bit_table or {}).items():
        chosen = [n for n in names if _matches(n, pattern)]
        patterns.append(("bit_table", pattern, chosen))
        for n in chosen:
            plan[n] = (int(bits[0]), int(bits[1]))
    for kind, pattern, chosen in patterns:
        if not chosen:
            raise UserError(f"{kind} pattern '{pattern}' matches no layer; layers: {', '.join(names)}")
    return plan


def cell_at(net, path):
    """The cell at ``path`` (a dotted path from ``net.cells_and_names()``; "" is ``net``); ValueError
    naming the path when a part of it is missing."""
    cell = net
    for part in path.split(".") if path else ():
        cell = cell[int(part)] if part.isdigit() else getattr(cell, part, None)
        if cell is None:
            raise UserError(f"no cell '{path}' in {type(net).__name__}")
    return cell


def replace_cell(net, name, new_cell, prefix=None):
    """Put ``new_cell`` at ``name`` (a dotted path from ``net.cells_and_names()``) in place of the cell
    there. Parameter names: ``prefix`` given, ``"<prefix>.<local name>"`` (a layer taking the
    place and names of the one it replaces); None, ``new_cell``'s parameters keep the names they
    had (MindSpore would otherwise prefix them with the attribute name)."""
    kept = {id(p): p.name for p in new_cell.get_parameters()}
    parent_path, _, last = name.rpartition(".")
    parent = cell_at(net, parent_path)
    if last.isdigit():
        parent[int(last)] = new_cell
    else:
        setattr(parent, last, new_cell)
    for local, param in new_cell.parameters_and_names():
        param.name = f"{prefix}.{local}" if prefix is not None else kept[id(param)]


def quantize_model(net, qcfg):
    """Replace quantizable layers of ``net`` in place (bounds left at -1 / 1 until calibrated);
    returns ``{name: (w_bit, a_bit) | None}``, also kept as ``net.quant_plan``. ``ValueError`` for a
    model without Conv2d/Dense layers, a scope pattern that matches no layer, or scopes that leave every
    layer in floating point (nothing would be quantized)."""
    layers = quantizable_layers(net)
    if not layers:
        raise UserError(f"{type(net).__name__} has no Conv2d/Dense layer to quantize")
    plan = layer_bits([n for n, _ in layers], qcfg)
    if all(bits is None for bits in plan.values()):
        raise UserError(f"fp_scope {', '.join(repr(p) for p in qcfg.fp_scope)} leaves all {len(plan)} layers in "
                         "floating point, so nothing would be quantized; narrow --fp_scope (e.g. 'conv_first')")
    for name, cell in layers:
        bits = plan[name]
        if bits is None:
            continue
        wrapper = QuantConv2d if isinstance(cell, nn.Conv2d) else QuantDense
        replace_cell(net, name, wrapper(cell, bits[0], bits[1], qcfg.w_symmetric), prefix=name)
    net.quant_plan = plan
    return plan
