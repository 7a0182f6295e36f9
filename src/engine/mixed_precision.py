"""Mixed precision under a model-size or BOPs budget: a per-layer bit table chosen by measured sensitivity.

Every quantizable layer of the deploy form takes one of two bit pairs, ``low`` (e.g. W4A4) or
``high`` (e.g. W8A8); layers in ``--fp_scope`` stay float and count at 32 bits in both extremes.

**Cost** of a layer at ``(w_bit, a_bit)`` (:func:`layer_cost`; 0 bits = float = 32):

- ``size``: weight storage, kernel elements x ``w_bit`` (bits; reported in KiB = bits / 8192;
  biases are not counted, they stay 32-bit whatever the table);
- ``bops``: bit operations, MACs x ``w_bit`` x ``a_bit`` for one LR input of ``input_hw`` pixels
  (reported in G = 1e9), the BOPs count of HAWQ-V3 and of the mixed-precision literature.

**Sensitivity** (dB, the mean over the sensitivity sets of each set's mean PSNR-Y):

- ``lift`` (default): ``gain_i = PSNR(all low but layer i high) - PSNR(all low)``, each table
  calibrated on its own with the run's method (L + 1 calibrations). It is measured at the
  operating point the budget rows live at (mostly low bits): the error of layer i as the other,
  quantized layers propagate it, with PaC's bounds re-fitted for that table.
- ``drop``: ``gain_i = PSNR(only layer i at high) - PSNR(only layer i at low)``, every other layer
  float, from one all-low and one all-high calibration switched layer by layer
  (:func:`src.quantlib.restrict_quantization`): the isolated per-layer perturbation of HAWQ and
  PTQ4SR (2 calibrations). With PaC the bounds are those fitted for the whole all-low / all-high
  model, not for one quantized layer.

Measured gains below 0 are taken as 0 (more bits cannot be expected to cost PSNR; the
difference is calibration noise).

**Selection** (:func:`greedy_lifts`): HAWQ-V3 (Yao et al., ICML 2021, Sec. 3.3) casts bit
allocation as an integer linear program, minimising the summed per-layer sensitivity under a
size / BOPs budget; with two choices per layer it is a 0/1 knapsack (value: the gain of lifting a
layer, weight: its extra cost). We solve it with the ratio greedy (Dantzig 1957): start from all
low, lift layers in decreasing order of gain per extra cost (dB per bit or per bit-op; ties in
model order), skipping a layer that no longer fits and going on with the rest. Properties (tested):

- the table's cost never exceeds the budget;
- the predicted gain (sum of the lifted layers' gains) never decreases as the budget grows: at the
  first layer X that a larger budget lifts and a smaller one cannot, the larger gains ``gain_X``,
  while the smaller one has less than ``cost_X`` left for layers of at most X's ratio, so gains
  less than ``gain_X`` from then on;
- exact extremes: at the all-low cost nothing is lifted (every lift costs > 0); at the all-high
  cost every layer is lifted (zero gains come last but still fit).

The predicted gain assumes the gains add up, as HAWQ-V3's ILP does; every budget's table is then
calibrated and evaluated on its own, so the reported PSNR is measured, not predicted.
"""
import glob
import math
import os
import time
from dataclasses import dataclass

from src.data.eval_sets import resolve_eval_set
from src.engine.quant_eval import load_or_calibrate
from src.engine.sections import quantization_of
from src.engine.sensitivity import checkpoint_and_sets, psnr_on_sets, write_outputs
from src.models.complexity import layer_macs
from src.quantlib import QuantConfig, restrict_quantization
from src.quantlib.quant_layers import layer_bits, quantizable_layers
from src.utils.psnr_plot import psnr_panels
from src.weights.loader import load_for_inference
from src.errors import UserError

METRICS = ("size", "bops")
BUDGET_KINDS = ("gap", "high", "absolute")
SENSITIVITIES = ("lift", "drop")
FLOAT_BITS = 32
UNITS = {"size": ("KiB", 8 * 1024), "bops": ("GBOPs", 1e9)}


@dataclass(frozen=True)
class MixedPrecisionOptions:
    """The script's own options. ``budgets``: numbers read as ``budget_kind`` says (``gap``: the
    fraction of the way from the all-low to the all-high cost, 0..1; ``high``: a fraction of the
    all-high cost; ``absolute``: KiB for ``size``, GBOPs for ``bops``); ``metric``: ``size`` | ``bops``;
    ``high``: the lifted ``(w_bit, a_bit)`` (the low pair is the run's ``--w_bit/--a_bit``);
    ``sensitivity``: ``lift`` | ``drop``; ``sensitivity_datasets``: the sets sensitivity is measured
    on (empty: the eval sets); ``input_hw``: the LR input (H, W) BOPs are counted for."""
    budgets: tuple = (0.0, 0.1, 0.25, 0.5, 1.0)
    budget_kind: str = "gap"
    metric: str = "size"
    high: tuple = (8, 8)
    sensitivity: str = "lift"
    sensitivity_datasets: tuple = ()
    input_hw: tuple = (360, 640)


def _choice(text, allowed, flag):
    if text not in allowed:
        raise UserError(f"{flag} '{text}' is not one of {', '.join(allowed)}")
    return text


def _numbers(text, flag, kind, count=None):
    try:
        values = tuple(kind(v) for v in str(text).split(","))
    except ValueError:
        values = ()
    if not values or (count and len(values) != count) or not all(math.isfinite(v) for v in values):
        raise UserError(f"{flag} '{text}': give {count or 'one or more'} comma-separated "
                         f"{'integers' if kind is int else 'numbers'}")
    return values


def parse_options(raw):
    """:class:`MixedPrecisionOptions` from ``{flag name: text}`` (the script's flags, any subset);
    ``ValueError`` with one line naming the flag and what to give."""
    opts = MixedPrecisionOptions()
    kind = _choice(raw.get("budget_kind", opts.budget_kind), BUDGET_KINDS, "--budget_kind")
    budgets = _numbers(raw.get("budgets", "0,0.1,0.25,0.5,1"), "--budgets", float)
    if kind == "gap" and not all(0 <= b <= 1 for b in budgets):
        raise UserError(f"--budgets {raw.get('budgets')}: with --budget_kind gap each budget is a fraction "
                         "0..1 of the way from all-low to all-high bits, e.g. 0,0.25,1")
    if kind != "gap" and not all(b > 0 for b in budgets):
        raise UserError(f"--budgets {raw.get('budgets')}: with --budget_kind {kind} each budget must be > 0")
    high = _numbers(raw.get("high_bits", "8,8"), "--high_bits", int, 2)
    if not all(2 <= b <= 8 for b in high):
        raise UserError(f"--high_bits {raw['high_bits']}: give W,A bit widths between 2 and 8, e.g. 8,8")
    hw = _numbers(raw.get("input_size", "360,640"), "--input_size", int, 2)
    if min(hw) < 1:
        raise UserError(f"--input_size {raw['input_size']}: give the LR H,W in pixels, e.g. 360,640")
    sets = tuple(s for s in str(raw.get("sensitivity_datasets", "")).split(",") if s)
    return MixedPrecisionOptions(budgets, kind, _choice(raw.get("budget_metric", opts.metric), METRICS,
                                                        "--budget_metric"),
                                 high, _choice(raw.get("sensitivity", opts.sensitivity), SENSITIVITIES,
                                               "--sensitivity"), sets, hw)


def layer_cost(weights, macs, bits, metric):
    """Cost of one layer with ``weights`` kernel elements and ``macs`` multiply-accumulates at
    ``bits`` = ``(w_bit, a_bit)`` (None or 0 = float, counted as 32): ``size`` -> weight bits
    (``weights x w_bit``), ``bops`` -> bit operations (``macs x w_bit x a_bit``)."""
    w, a = (b or FLOAT_BITS for b in (bits or (0, 0)))
    return weights * w if metric == "size" else macs * w * a


def table_cost(layers, table, metric):
    """Summed :func:`layer_cost` of ``layers`` (``{name: (weights, macs)}``) under ``table``
    (``{name: (w_bit, a_bit)}``; a layer missing from it is float)."""
    return sum(layer_cost(w, m, table.get(n), metric) for n, (w, m) in layers.items())


def budget_cost(kind, value, low_cost, high_cost, metric):
    """The budget (bits or bit-ops) that ``value`` of ``kind`` (:data:`BUDGET_KINDS`) means, between
    the all-low cost ``low_cost`` and the all-high ``high_cost``. ``ValueError`` for a budget below
    ``low_cost`` (no table fits)."""
    unit, scale = UNITS[metric]
    cost = {"gap": low_cost + value * (high_cost - low_cost), "high": value * high_cost,
            "absolute": value * scale}[kind]
    if cost < low_cost:
        raise UserError(f"budget {value:g} ({kind}) is {cost / scale:.4g} {unit}, below the all-low cost "
                         f"{low_cost / scale:.4g} {unit}; give at least that")
    return cost


def greedy_lifts(gains, extra, budget):
    """The layers to lift, in lift order: the ratio greedy for the 0/1 knapsack (module notes).
    ``gains``: ``{name: dB}`` (clipped at 0), ``extra``: ``{name: extra cost of lifting}`` (> 0, same
    unit as ``budget``), ``budget``: what may be spent on lifts (>= 0). A layer with no extra cost is
    lifted first. Never spends more than ``budget``."""
    def ratio(name):
        gain = max(0.0, float(gains[name]))
        return math.inf if extra[name] <= 0 else gain / extra[name]
    order = sorted(gains, key=ratio, reverse=True)  # stable: ties stay in model order
    lifted, left = [], budget
    for name in order:
        if extra[name] <= left:
            lifted.append(name)
            left -= max(extra[name], 0)
    return lifted


def select_bit_table(layers, gains, low, high, metric, budget):
    """``(table, lifted)``: the bit table (``{name: (w_bit, a_bit)}`` over ``layers``, ``{name:
    (weights, macs)}``, model order) that lifts :func:`greedy_lifts`' layers from ``low`` to ``high``
    under ``budget`` (total cost, bits or bit-ops, >= the all-low cost), and those layers in lift order."""
    table = {n: tuple(low) for n in layers}
    extra = {n: layer_cost(w, m, high, metric) - layer_cost(w, m, low, metric) for n, (w, m) in layers.items()}
    lifted = greedy_lifts(gains, extra, budget - table_cost(layers, table, metric))
    table.update({n: tuple(high) for n in lifted})
    return table, lifted


def lift_gains(names, low, high, psnr_of):
    """``lift`` sensitivity: ``({name: dB}, all-low dB)``, ``psnr_of(table) -> dB`` measuring a
    calibrated table; ``table`` is ``{name: (w_bit, a_bit)}`` over ``names``."""
    base = psnr_of({n: tuple(low) for n in names})
    return {n: psnr_of({m: tuple(high if m == n else low) for m in names}) - base for n in names}, base


def drop_gains(names, isolated):
    """``drop`` sensitivity ``{name: dB}``; ``isolated(name, "low" | "high") -> dB`` measures the
    model with only that layer quantized at those bits."""
    return {n: isolated(n, "high") - isolated(n, "low") for n in names}


class TableRuns:
    """Calibrations of one float checkpoint for bit tables, each calibrated once and measured once per
    set: ``psnr(table, sets)`` -> ``{set: dB}``. ``config`` is the run's (its ``--quant_method`` and
    calibration options apply to every table)."""

    def __init__(self, config, evaluation, ckpt, log):
        self.config, self.evaluation, self.ckpt, self.log = config, evaluation, ckpt, log
        self.seconds, self._psnr = {}, {}

    def calibrate(self, table):
        """The quantized model calibrated for ``table`` (``{name: (w_bit, a_bit)}``); the dbdc_pac
        recipe is the one of the table's lowest bits. ``ValueError`` for a calibrated checkpoint."""
        bits = list(table.values())
        cfg = self.config.replace(w_bit=min(b[0] for b in bits), a_bit=min(b[1] for b in bits),
                                  bit_table={glob.escape(n): list(b) for n, b in table.items()})
        start = time.time()
        _, q_net, _, _, calibration = load_or_calibrate(self.evaluation.model, quantization_of(cfg), self.ckpt,
                                                        lambda *_: None)
        if calibration is None:
            raise UserError(f"--pre_trained {self.ckpt} is a calibrated checkpoint; mixed precision "
                             "calibrates each bit table itself: give the float checkpoint")
        self.seconds[_key(table)] = round(time.time() - start, 1)
        return q_net

    def psnr(self, table, eval_sets):
        """``{set: PSNR dB}`` of ``table`` calibrated (once) on ``eval_sets``."""
        key = _key(table)
        missing = [s for s in eval_sets if (key, s.name) not in self._psnr]
        if missing:
            net = self.calibrate(table)
            self._psnr.update({(key, k): v for k, v in psnr_on_sets(net, missing, self.evaluation).items()})
            self.log(f"{_lifted_text(table)}: " + ", ".join(f"{s.name} {self._psnr[(key, s.name)]:.3f}"
                                                              for s in missing))
        return {s.name: self._psnr[(key, s.name)] for s in eval_sets}


def _key(table):
    return tuple(sorted((n, tuple(b)) for n, b in table.items()))


def _lifted_text(table):
    counts = {}
    for bits in table.values():
        counts[bits] = counts.get(bits, 0) + 1
    lowest = min(counts, key=lambda b: (b[0] * b[1], b))
    others = [f"{n} W{b[0]}A{b[1]}" for n, b in table.items() if b != lowest]
    return f"W{lowest[0]}A{lowest[1]}" + (" but " + ", ".join(others) if others else " everywhere")


def _mean(psnr):
    return sum(psnr.values()) / len(psnr)


def measure_gains(runs, names, low, high, kind, sets):
    """``{name: dB}`` of sensitivity ``kind`` (:data:`SENSITIVITIES`) on ``sets`` via ``runs``
    (:class:`TableRuns`)."""
    if kind == "lift":
        return lift_gains(names, low, high, lambda table: _mean(runs.psnr(table, sets)))[0]
    nets = {which: runs.calibrate({n: tuple(bits) for n in names}) for which, bits in (("low", low), ("high", high))}

    def isolated(name, which):
        bits = high if which == "high" else low
        cfg = QuantConfig(bits[0], bits[1], fp_scope=["*"], bit_table={glob.escape(name): list(bits)})
        value = _mean(psnr_on_sets(restrict_quantization(nets[which], cfg), sets, runs.evaluation))
        runs.log(f"only {name} W{bits[0]}A{bits[1]}: {value:.3f}")
        return value
    return drop_gains(names, isolated)


def _layers(fp_net, config, input_hw):
    """``({candidate name: (weights, macs)}, {float name: (weights, macs)})`` in model order: the
    quantizable layers, split by ``--fp_scope``."""
    named = quantizable_layers(fp_net)
    macs = dict(layer_macs(fp_net, input_hw, [c for _, c in named]))
    plan = layer_bits([n for n, _ in named], QuantConfig(8, 8, fp_scope=list(config.fp_scope)))
    counts = {n: (int(c.weight.size), macs[c]) for n, c in named}
    if not any(plan.values()):
        raise UserError(f"--fp_scope {', '.join(repr(p) for p in config.fp_scope)} leaves all {len(plan)} layers in "
                         "floating point: no layer is left to choose bits for; narrow --fp_scope")
    return ({n: v for n, v in counts.items() if plan[n]}, {n: v for n, v in counts.items() if not plan[n]})


def default_table(config, names):
    """The table eval.py's scopes give at the run's bits (``int8_scope``, e.g. first/last W8A8)."""
    qcfg = QuantConfig(config.w_bit, config.a_bit, config.w_symmetric, list(config.int8_scope), [])
    return {n: b for n, b in layer_bits(names, qcfg).items() if b}


def _check(config, options):
    low = (int(config.w_bit), int(config.a_bit))
    if not (low[0] and low[1]):
        raise UserError("--w_bit / --a_bit 0: mixed precision needs the low bit widths of weights and activations")
    if any(h < l for h, l in zip(options.high, low)) or tuple(options.high) == low:
        raise UserError(f"--high_bits {options.high[0]},{options.high[1]} must be above --w_bit/--a_bit "
                         f"{low[0]}/{low[1]} (lifting a layer adds bits)")
    if config.bit_table:
        raise UserError("bit_table is set in the config: mixed precision chooses it; leave bit_table {}")
    return low


@dataclass
class Study:
    """One mixed-precision run: the calibrations (``runs``, :class:`TableRuns`), the candidate
    ``layers`` and ``floats`` (``{name: (weights, macs)}``), the measured ``gains`` (dB), the ``low``
    bits, the ``options`` (:class:`MixedPrecisionOptions`) and the ``eval_sets`` rows are measured on."""
    runs: TableRuns
    layers: dict
    floats: dict
    gains: dict
    low: tuple
    options: MixedPrecisionOptions
    eval_sets: list

    def row(self, label, budget, table, lifted):
        """One report row: ``table`` calibrated and evaluated, its size (KiB) and BOPs (G)."""
        every = dict(self.layers, **self.floats)
        return {"budget": label, "budget_cost": budget,
                "size_kib": table_cost(every, table, "size") / UNITS["size"][1],
                "gbops": table_cost(every, table, "bops") / UNITS["bops"][1],
                "psnr": self.runs.psnr(table, self.eval_sets),
                "predicted_gain_db": sum(max(0.0, self.gains[n]) for n in lifted),
                "lifted": list(lifted), "table": {n: list(b) for n, b in table.items()},
                "calibration_seconds": self.runs.seconds.get(_key(table))}

    def budget_rows(self, budgets):
        """One row per ``(value, cost)`` of ``budgets`` (:func:`budget_costs`)."""
        rows, metric = [], self.options.metric
        for value, budget in budgets:
            table, lifted = select_bit_table(self.layers, self.gains, self.low, self.options.high, metric,
                                             budget - table_cost(self.floats, {}, metric))
            rows.append(self.row(f"{self.options.budget_kind} {value:g}", budget, table, lifted))
            self.runs.log(f"budget {rows[-1]['budget']}: {rows[-1]['size_kib']:.2f} KiB, "
                          f"{rows[-1]['gbops']:.3f} GBOPs, "
                          + ", ".join(f"{k} {v:.3f}" for k, v in rows[-1]["psnr"].items()))
        return rows


def budget_costs(layers, floats, low, options):
    """``[(budget value, cost)]`` of ``options.budgets`` (bits or bit-ops over every layer, float ones
    included); ``ValueError`` for one below the all-low cost, before anything is measured."""
    every = dict(layers, **floats)
    lo, hi = (table_cost(every, {n: tuple(bits) for n in layers}, options.metric) for bits in (low, options.high))
    return [(v, budget_cost(options.budget_kind, v, lo, hi, options.metric)) for v in options.budgets]


def run_mixed_precision(config, options, log=print):
    """Measure per-layer sensitivity once, then for every budget of ``options``
    (:class:`MixedPrecisionOptions`) choose the bit table (:func:`select_bit_table`), calibrate it
    with ``--quant_method`` (default dbdc_pac) and evaluate it (eval protocol, PSNR-Y) on the eval
    sets; writes ``<output_path>/mixed_precision_<model>_<variant>_x<scale>_<low>-<high>_<method>_<metric>``
    ``.{md,json,png}`` and returns the report dict. User errors are ``ValueError``/``OSError``."""
    low = _check(config, options)
    config, evaluation, ckpt, eval_sets = checkpoint_and_sets(config, "dbdc_pac", "mixed precision", log)
    sens_sets = [resolve_eval_set(evaluation.data.data_path, n, evaluation.protocol.scale)
                 for n in options.sensitivity_datasets] or eval_sets
    model = evaluation.model
    fp_net, _ = load_for_inference(model.model, model.variant, model.scale, ckpt, model.option_dict())
    layers, floats = _layers(fp_net, config, options.input_hw)
    budgets = budget_costs(layers, floats, low, options)
    runs = TableRuns(config, evaluation, ckpt, log)
    start = time.time()
    log(f"measuring {options.sensitivity} sensitivity of {len(layers)} layers W{low[0]}A{low[1]} -> "
        f"W{options.high[0]}A{options.high[1]} ({config.quant_method}) on {', '.join(s.name for s in sens_sets)}")
    gains = measure_gains(runs, list(layers), low, options.high, options.sensitivity, sens_sets)
    study = Study(runs, layers, floats, gains, low, options, eval_sets)
    report = {"model": model.model, "variant": fp_net.variant, "scale": model.scale, "pre_trained": ckpt,
              "quant": {"method": config.quant_method, "low": list(low), "high": list(options.high),
                        "equalize": str(config.equalize), "calib_num": evaluation.quant.images.num},
              "metric": options.metric, "budget_kind": options.budget_kind, "input_hw": list(options.input_hw),
              "sensitivity": {"kind": options.sensitivity, "datasets": [s.name for s in sens_sets],
                              "gain_db": gains, "seconds": round(time.time() - start, 1)},
              "layers": {n: {"weights": w, "macs": m} for n, (w, m) in layers.items()},
              "float_layers": {n: {"weights": w, "macs": m} for n, (w, m) in floats.items()},
              "fp": psnr_on_sets(fp_net, eval_sets, evaluation), "rows": study.budget_rows(budgets)}
    reference = default_table(config, list(layers))
    if _key(reference) not in {_key(_as_bits(r["table"])) for r in report["rows"]}:
        report["rows"].append(study.row("eval.py default scopes", None, reference, []))
    _write(report, evaluation.outputs.output_path, log)
    return report


def _as_bits(table):
    return {n: tuple(b) for n, b in table.items()}


def markdown(report):
    """The report as Markdown: the per-layer sensitivity and costs, then one line per budget."""
    sets = list(report["fp"])
    low, high = report["quant"]["low"], report["quant"]["high"]
    sens = report["sensitivity"]
    lines = [f"{report['model']}-{report['variant']} x{report['scale']}, {report['quant']['method']}, "
             f"W{low[0]}A{low[1]} -> W{high[0]}A{high[1]}; budget on {report['metric']} ({report['budget_kind']}); "
             f"BOPs for a {report['input_hw'][0]}x{report['input_hw'][1]} LR input. FP32: "
             + ", ".join(f"{s} {report['fp'][s]:.2f}" for s in sets), "",
             f"Sensitivity ({sens['kind']}, on {', '.join(sens['datasets'])}):", "",
             "| layer | weights | MMACs | gain (dB) |", "|---|---|---|---|"]
    for name, info in report["layers"].items():
        lines.append(f"| {name} | {info['weights']} | {info['macs'] / 1e6:.1f} | {sens['gain_db'][name]:+.3f} |")
    lines += ["", "| budget | size (KiB) | BOPs (G) | " + " | ".join(f"{s} PSNR" for s in sets)
              + f" | layers at W{high[0]}A{high[1]} (lift order) |", "|---|---|---|" + "---|" * len(sets) + "---|"]
    for r in report["rows"]:
        lifted = r["lifted"] or [n for n, b in r["table"].items() if list(b) != list(low)]
        lines.append(f"| {r['budget']} | {r['size_kib']:.2f} | {r['gbops']:.2f} | "
                     + " | ".join(f"{r['psnr'][s]:.2f}" for s in sets) + f" | {', '.join(lifted) or '-'} |")
    return "\n".join(lines)


def plot(report, path):
    """PSNR against the budget metric (size KiB or GBOPs), one panel per eval set, as a PNG at ``path``:
    the budget rows as one curve, the reference rows (eval.py's scopes) as single points."""
    xkey, xlabel = ("size_kib", "weights (KiB)") if report["metric"] == "size" else ("gbops", "BOPs (G)")
    title = f"{report['model']}-{report['variant']} x{report['scale']}"
    with psnr_panels(list(report["fp"]), report["fp"], xlabel, title, path) as panels:
        for ax, name in panels:
            chosen = sorted((r[xkey], r["psnr"][name]) for r in report["rows"] if r["budget_cost"] is not None)
            ax.plot([p[0] for p in chosen], [p[1] for p in chosen], marker="o", label="greedy bit table")
            for r in report["rows"]:
                if r["budget_cost"] is None:
                    ax.plot(r[xkey], r["psnr"][name], marker="s", linestyle="", label=r["budget"])


def _write(report, output_path, log):
    low, high = report["quant"]["low"], report["quant"]["high"]
    stem = os.path.join(output_path, f"mixed_precision_{report['model']}_{report['variant']}_x{report['scale']}"
                        f"_w{low[0]}a{low[1]}-w{high[0]}a{high[1]}_{report['quant']['method']}_{report['metric']}")
    table = markdown(report)
    write_outputs(stem, report, table)
    plot(report, stem + ".png")
    log(table)
    log(f"wrote {stem}.md, {stem}.json, {stem}.png")


__all__ = ["MixedPrecisionOptions", "parse_options", "layer_cost", "table_cost", "budget_cost", "greedy_lifts",
           "select_bit_table", "budget_costs", "Study", "lift_gains", "drop_gains", "measure_gains", "TableRuns", "default_table",
           "run_mixed_precision", "markdown", "plot"]
