"""Per-layer quantization sensitivity: where a quantized model loses PSNR.

One calibration (the run's ``--quant_method``, default DBDC, with ``--equalize`` honoured) gives
every quantizer's bounds; :func:`src.quantlib.restrict_quantization` then switches on one
layer's input activation, its weight, or both, and the model is evaluated with the eval
protocol (PSNR on the Y channel, :func:`~src.engine.evaluator.evaluate_set`) on every
``--eval_datasets`` set. Rows "all weights", "all activations" and "all" close the table
("all" is the calibrated model itself). This is the one-layer-at-a-time analysis of PTQ4SR
(Tu et al., CVPR 2023, Sec. 3) and of HAWQ-style sensitivity lists, measured end to end.

Without PaC the bounds of a layer come from float-model statistics and do not depend on
which other layers are quantized, so a row equals a calibration with only that layer
quantized. With ``dbdc_pac`` the rows use the bounds PaC refined for the whole model.
"""
import glob
import json
import os
import time

from src.data.eval_sets import resolve_eval_set
from src.engine.evaluator import evaluate_set, select_datasets
from src.engine.inference import SRPredictor
from src.engine.quant_eval import load_or_calibrate
from src.engine.sections import evaluation_sections
from src.paths import select_checkpoint
from src.quantlib import QuantConfig, restrict_quantization
from src.utils.atomic import atomic_target
from src.errors import UserError
from src.engine.file_eval import is_exported_file

KINDS = ("activation", "weight", "both")


def row_configs(plan, qcfg):
    """``[(label, kind, QuantConfig)]`` of the sensitivity rows for the calibrated ``plan``
    (``{layer: (w_bit, a_bit) | None}``, model order; float layers are skipped): per layer its
    input activation, its weight, both; then all weights, all activations, all. ``qcfg`` gives
    the weight symmetry. Each config quantizes exactly what its row says (``fp_scope=["*"]`` and a
    ``bit_table`` of the chosen layers)."""
    layers = [(name, bits) for name, bits in plan.items() if bits]

    def config(table):
        return QuantConfig(qcfg.w_bit, qcfg.a_bit, qcfg.w_symmetric, fp_scope=["*"],
                           bit_table={glob.escape(n): list(b) for n, b in table.items()})
    rows = []
    for name, (w, a) in layers:
        rows += [(name, "activation", config({name: (0, a)})), (name, "weight", config({name: (w, 0)})),
                 (name, "both", config({name: (w, a)}))]
    rows += [("all weights", "weight", config({n: (w, 0) for n, (w, _) in layers})),
             ("all activations", "activation", config({n: (0, a) for n, (_, a) in layers})),
             ("all", "both", config(dict(layers)))]
    return rows


def psnr_on_sets(net, eval_sets, evaluation):
    """``{set name: mean PSNR (dB, the protocol's channel)}`` of ``net`` on ``eval_sets``."""
    predictor = SRPredictor.configured(net, evaluation.model.scale, evaluation.inference)
    return {s.name: evaluate_set(predictor, s, evaluation.protocol)["psnr"] for s in eval_sets}


def measure(fp_net, q_net, qcfg, evaluate, log=print):
    """Float PSNR and the sensitivity rows of the calibrated ``q_net`` (float reference ``fp_net``;
    ``evaluate(net) -> {set: PSNR}``). Returns ``(fp, rows)``, rows as
    ``{"layer", "kind", "w_bit", "a_bit", "psnr": {set: dB}, "delta": {set: dB vs float}}``."""
    fp = evaluate(fp_net)
    rows = []
    for label, kind, cfg in row_configs(q_net.quant_plan, qcfg):
        net = restrict_quantization(q_net, cfg)
        psnr = evaluate(net)
        on = [b for b in net.quant_plan.values() if b]
        w_bits = sorted({b[0] for b in on if b[0]})
        a_bits = sorted({b[1] for b in on if b[1]})
        rows.append({"layer": label, "kind": kind, "w_bit": "/".join(map(str, w_bits)) or "-",
                     "a_bit": "/".join(map(str, a_bits)) or "-", "psnr": psnr,
                     "delta": {k: v - fp[k] for k, v in psnr.items()}})
        log(f"{label:<24} {kind:<10} " + "  ".join(f"{k} {v:.3f} ({rows[-1]['delta'][k]:+.3f})"
                                                   for k, v in psnr.items()))
    return fp, rows


def markdown(fp, rows, sets):
    """The table: one line per layer (activation / weight / both PSNR with the change vs float), then
    the whole-model rows."""
    head = "| layer | W/A bits | " + " | ".join(f"{s} {k}" for s in sets for k in KINDS) + " |"
    lines = ["FP32: " + ", ".join(f"{s} {fp[s]:.2f}" for s in sets), "", head, "|---|---|" + "---|" * 3 * len(sets)]
    by_layer = {}
    for r in rows:
        by_layer.setdefault(r["layer"], {})[r["kind"]] = r
    for layer, kinds in by_layer.items():
        bits = kinds.get("both", next(iter(kinds.values())))
        cells = [f"{kinds[k]['psnr'][s]:.2f} ({kinds[k]['delta'][s]:+.2f})" if k in kinds else ""
                 for s in sets for k in KINDS]
        lines.append(f"| {layer} | W{bits['w_bit']}A{bits['a_bit']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_outputs(stem, report, table):
    """``<stem>.md`` and ``<stem>.json``, each written atomically."""
    with atomic_target(stem + ".md") as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(table + "\n")
    with atomic_target(stem + ".json") as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)


def checkpoint_and_sets(config, default_method, what, log):
    """``(config, evaluation, checkpoint path, eval sets)`` of a run that calibrates a MindSpore
    checkpoint itself: ``--quant_method`` defaulted to ``default_method``, the
    :class:`~src.engine.sections.Evaluation`, the resolved checkpoint and the resolved
    ``--eval_datasets``. ``ValueError`` naming ``what`` for an exported model (ONNX, MindIR, ...)."""
    if is_exported_file(config.pre_trained):
        raise UserError(f"--pre_trained {config.pre_trained}: {what} needs a MindSpore checkpoint "
                         "(.ckpt), not an exported model")
    config = config if config.quant_method else config.replace(quant_method=default_method)
    evaluation = evaluation_sections(config)
    names, note = select_datasets(evaluation)
    if note:
        log(note)
    ckpt = select_checkpoint(config)
    return config, evaluation, ckpt, [resolve_eval_set(evaluation.data.data_path, n, evaluation.protocol.scale)
                                      for n in names]


def run_sensitivity(config, log=print):
    """Calibrate the configured float (or calibrated) checkpoint once (``quant_method`` default dbdc)
    and measure every row of :func:`row_configs`; prints the table, writes
    ``<output_path>/sensitivity_<model>_<variant>_x<scale>_w<b>a<b>_<method>.{md,json}`` and
    returns the report dict. User errors (bad data, checkpoint, scope) are ``ValueError``/``OSError``."""
    config, evaluation, ckpt, eval_sets = checkpoint_and_sets(config, "dbdc", "sensitivity", log)
    names = [s.name for s in eval_sets]
    start = time.time()
    fp_net, q_net, qcfg, method, _ = load_or_calibrate(evaluation.model, evaluation.quant, ckpt, log)
    seconds = time.time() - start
    log(f"calibrated {method} W{qcfg.w_bit}A{qcfg.a_bit} in {seconds:.1f} s; measuring "
        f"{3 * sum(1 for b in q_net.quant_plan.values() if b) + 3} configurations on {', '.join(names)}")
    fp, rows = measure(fp_net, q_net, qcfg, lambda net: psnr_on_sets(net, eval_sets, evaluation), log)
    model = evaluation.model
    stem = os.path.join(evaluation.outputs.output_path, f"sensitivity_{model.model}_{fp_net.variant}_x{model.scale}"
                        f"_w{qcfg.w_bit}a{qcfg.a_bit}_{method}")
    report = {"model": model.model, "variant": fp_net.variant, "scale": model.scale, "pre_trained": ckpt,
              "quant": {"method": method, "w_bit": qcfg.w_bit, "a_bit": qcfg.a_bit,
                        "equalize": bool(evaluation.quant.calib.equalize), "calibration_seconds": round(seconds, 1)},
              "fp": fp, "rows": rows}
    table = markdown(fp, rows, list(fp))
    write_outputs(stem, report, table)
    log(table)
    log(f"wrote {stem}.md, {stem}.json")
    return report


__all__ = ["run_sensitivity", "checkpoint_and_sets", "measure", "row_configs", "markdown", "psnr_on_sets"]
