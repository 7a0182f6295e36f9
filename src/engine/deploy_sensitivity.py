"""Where a deployment model loses: PSNR with one kind of rounding left out at a time.

For a calibrated deployment checkpoint (:mod:`src.quantlib.deploy`), each row evaluates a copy of
the quantized model with one group of roundings switched off (a fresh copy per row: MindSpore keeps
one compiled graph per Cell object): the conv inputs and weights, each kind of deployment site
(``prelu``, ``residual``, ``input``, ...), and the int32 bias; plus the float model with only the
image-grid input (what any 8-bit file of a Y model costs). The gain of a row over the full
deployment model is what that rounding costs the int8 file.
"""
import copy
import os
import time

from mindspore import nn

from src.engine.quant_eval import load_or_calibrate
from src.engine.sensitivity import checkpoint_and_sets, psnr_on_sets, write_outputs
from src.quantlib.deploy import ImageGridQuant, sites_of
from src.quantlib.quant_layers import QuantConv2d, quant_layers
from src.errors import UserError


def _without(q_net, group):
    """A copy of ``q_net`` with the roundings of ``group`` off: 'conv' (inputs, weights and the int32
    bias), 'conv inputs', 'conv weights', 'the input of <layer>' (one conv's), 'bias', or a site kind."""
    net = copy.deepcopy(q_net)
    if group.startswith("the input of "):
        for name, layer in quant_layers(net):
            if name == group[len("the input of "):]:
                layer.act_quant.enabled = False
        return net
    if group in ("conv", "conv inputs", "conv weights"):
        for _, layer in quant_layers(net):
            if group != "conv weights":
                layer.act_quant.enabled = False
            if group != "conv inputs":
                layer.weight_quant.enabled = False
            if group == "conv":
                layer.round_bias = False
        return net
    if group == "bias":
        for _, cell in net.cells_and_names():
            if isinstance(cell, QuantConv2d):
                cell.round_bias = False
        return net
    cells = dict(net.cells_and_names())
    for site in sites_of(net):
        if site.kind != group:
            continue
        if group == "input":
            net.input_quant = nn.Identity()
        elif group == "tied":
            cells[site.cell].out_mode = 0
        elif group == "tied_input":
            cells[site.cell].input_quant = nn.Identity()
        elif group == "prelu":
            cells[site.cell].in_quant.enabled = False
        else:
            cells[site.cell].out_quant.enabled = False
    return net


def deploy_sensitivity(fp_net, q_net, score, log=print):
    """``[{"rounding", "psnr": {set: dB}}]``: the float model, the deployment model, the deployment
    model without each group of roundings (then without one conv's input rounding at a time), and (Y models) the float model with only its input on the
    8-bit image grid. ``score(net) -> {set: PSNR}``."""
    rows = [{"rounding": "none (float)", "psnr": score(copy.deepcopy(fp_net))},
            {"rounding": "all (the deployment model = the int8 file)", "psnr": score(copy.deepcopy(q_net))}]
    groups = ["conv", "conv inputs", "conv weights", "bias"] + sorted({site.kind for site in sites_of(q_net)})
    groups += [f"the input of {name}" for name, _ in quant_layers(q_net)]
    for group in groups:
        rows.append({"rounding": f"all but {group}", "psnr": score(_without(q_net, group))})
        log(f"  all but {group}: {rows[-1]['psnr']}")
    if hasattr(fp_net, "input_quant") and any(site.kind == "input" for site in sites_of(q_net)):
        only_input = copy.deepcopy(fp_net)
        only_input.input_quant = ImageGridQuant()
        rows.append({"rounding": "input only (float model, 8-bit input grid)", "psnr": score(only_input)})
    return rows


def sensitivity_table(report):
    """The Markdown table of a deployment-sensitivity report (its rows: one rounding left out each, PSNR per
    set and its difference from the float row)."""
    rows = report["rows"]
    names, float_row = list(rows[0]["psnr"]), rows[0]["psnr"]
    lines = ["| rounding | " + " | ".join(f"{n} (dB vs float)" for n in names) + " |",
             "|---" * (len(names) + 1) + "|"]
    lines += [f"| {r['rounding']} | " + " | ".join(f"{r['psnr'][n]:.2f} ({r['psnr'][n] - float_row[n]:+.3f})"
                                                   for n in names) + " |" for r in rows]
    return "\n".join(lines)


def run_deploy_sensitivity(config, log=print):
    """Calibrate (or load) the configured checkpoint as eval.py would (``quant_method`` default
    dbdc_pac, W8A8: the deployment model) and measure :func:`deploy_sensitivity` on its sets; writes
    ``<output_path>/deploy_sensitivity_<model>_<variant>_x<scale>_<method>.{md,json}``."""
    config, evaluation, ckpt, eval_sets = checkpoint_and_sets(config, "dbdc_pac", "deployment sensitivity", log)
    start = time.time()
    fp_net, q_net, qcfg, method, _ = load_or_calibrate(evaluation.model, evaluation.quant, ckpt, log)
    if qcfg.placement != "deploy":
        raise UserError("the deployment sensitivity needs the deploy placement (W8A8, every layer quantized)")
    log(f"calibrated {method} in {time.time() - start:.1f} s; {len(sites_of(q_net))} deployment sites")
    rows = deploy_sensitivity(fp_net, q_net, lambda net: {k: round(v, 4) for k, v in
                                                          psnr_on_sets(net, eval_sets, evaluation).items()}, log)
    model = evaluation.model
    stem = os.path.join(evaluation.outputs.output_path,
                        f"deploy_sensitivity_{model.model}_{fp_net.variant}_x{model.scale}_{method}")
    report = {"model": model.model, "variant": fp_net.variant, "scale": model.scale, "pre_trained": ckpt,
              "method": method, "rows": rows}
    table = sensitivity_table(report)
    write_outputs(stem, report, table)
    log(table)
    log(f"wrote {stem}.md, {stem}.json")
    return report


__all__ = ["deploy_sensitivity", "run_deploy_sensitivity"]
