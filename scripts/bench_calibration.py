"""Calibration and QAT speed, before and after the compiled paths, side by side in one run.

    python scripts/bench_calibration.py --pre_trained abpn_x3.ckpt --calib_path ../shared/data/train
    python scripts/bench_calibration.py --pre_trained abpn_x3.ckpt --calib_path ../shared/data/train \
        --methods dbdc_pac --qat_rounds 8 --json outputs/bench_calibration.json

Part 1, calibration wall time of each method on the model (default ABPN-M4C28 x3 at
W8A8; ``--calib_num`` patches drawn from ``--calib_path`` once, not timed): ``quantize()``
from a freshly loaded float model, the same call eval.py makes. MinMax, percentile, OMSE and
DBDC have one path (statistics on the float model with forward hooks, then numpy); DBDC+PaC
is timed twice: "before" as the code ran before the compiled step (``pac_graph False``:
PyNative steps, feature taps read with forward hooks, the float model run every step; and
the activation quantizers' op-by-op autodiff gradient, reproduced here by
:func:`op_by_op_quantizers`) and "after" (defaults: compiled step, written-out gradient).
Both run PaC's full 500 steps (250 + 250, the settings ``PaCConfig()`` holds; the 8-bit
recipe runs only the 250 activation steps). A third row times dbdc_pac as eval.py runs it
now by default (the bit width's recipe: equalisation, then PaC's activation phase), against
the same "before", which was the previous default. Targets: at least 10x, under 60 s.

Part 2, one QAT step next to one float training step of the same network, batch and patch
(default batch 16 of 64x64 LR patches, L1 loss against random HR patches, Adam, the
project's ``TrainStep`` in graph mode, as train.py runs it): float; QAT W8A8 with the
per-tensor quantizers' written-out gradient (after); QAT W8A8 with the op-by-op autodiff
form (before, reproduced by switching the quantizers to it). Steps are timed in
``--qat_rounds`` interleaved rounds of ``--qat_steps`` (the median round is reported), so that
load from other jobs falls on all three alike. Target: QAT at most 1.5x the float step.

Part 3 (``--placement_rounds N``): dbdc_pac at its defaults with PTQ4SR's placement against the
deployment placement eval.py now uses at W8A8 (sites found on the mobile graph, calibrated, refined
by PaC), interleaved, median of N rounds. Target: at most 1.3x.

Prints the tables; ``--json`` also writes them (atomic). Bad inputs: one line, exit code 2.
"""
import argparse
import contextlib
import json
import os
import statistics
import sys
import time

import _bootstrap  # noqa: E402,F401  pylint: disable=unused-import,wrong-import-position  (the project root on sys.path)

import model_utils  # noqa: E402,F401  (CPU runtime defaults before mindspore loads)

METHODS = ("minmax", "percentile", "omse", "dbdc", "dbdc_pac")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="abpn")
    p.add_argument("--variant", default="M4C28")
    p.add_argument("--scale", type=int, default=3)
    p.add_argument("--pre_trained", required=True, help="float checkpoint (e.g. the converted published ABPN x3)")
    p.add_argument("--calib_path", required=True, help="folder of unlabeled images (e.g. ../shared/data/train)")
    p.add_argument("--calib_num", type=int, default=100)
    p.add_argument("--bits", type=int, default=8, help="w_bit = a_bit for calibration (2-8)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated; empty: skip the calibration part")
    p.add_argument("--qat_batch", type=int, default=16)
    p.add_argument("--qat_patch", type=int, default=64, help="LR patch side of the QAT/float step")
    p.add_argument("--qat_steps", type=int, default=5, help="steps per timed round")
    p.add_argument("--qat_rounds", type=int, default=6, help="interleaved rounds (0: skip part 2)")
    p.add_argument("--json", default="", help="also write the results here")
    p.add_argument("--placement_rounds", type=int, default=0,
                   help="interleaved rounds of dbdc_pac (defaults) with the ptq4sr and the deploy placement (0: skip)")
    return p.parse_args(argv)


def check_args(args):
    """One line naming the problem and the fix for a bad option (raises SystemExit 2)."""
    methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in methods if m not in METHODS]
    problems = []
    if bad:
        problems.append(f"--methods {args.methods!r}: choose from {', '.join(METHODS)} (empty: skip part 1)")
    if not os.path.isfile(args.pre_trained):
        problems.append(f"--pre_trained {args.pre_trained}: no such file; pass a float checkpoint")
    if not 2 <= args.bits <= 8:
        problems.append(f"--bits {args.bits}: must be between 2 and 8")
    for name in ("calib_num", "qat_batch", "qat_patch", "qat_steps"):
        if getattr(args, name) < 1:
            problems.append(f"--{name} {getattr(args, name)}: must be at least 1")
    if args.qat_rounds < 0:
        problems.append(f"--qat_rounds {args.qat_rounds}: must be 0 or more")
    if problems:
        print(f"error: {problems[0]}", file=sys.stderr)
        raise SystemExit(2)
    return methods


@contextlib.contextmanager
def op_by_op_quantizers():
    """Within the block, new activation quantizers use the op-by-op autodiff form of the grid
    (``grid.fake_quantize_asymmetric_ms``, as before the written-out gradient) instead of
    ``AsymmetricFakeQuantize``: the same values, the previous backward pass."""
    from src.quantlib.fake_quant import FakeQuant
    original = FakeQuant.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.per_tensor = False
    FakeQuant.__init__ = init
    try:
        yield
    finally:
        FakeQuant.__init__ = original


def _recipe_settings(bits):
    """(CalibrationConfig, PaCConfig) of dbdc_pac at its defaults for ``bits`` (the recipe row)."""
    from src.quantlib import CalibrationConfig, PaCConfig, recipes
    r = recipes.recipe_for("dbdc_pac", bits, bits)
    return (CalibrationConfig("dbdc", dbdc_p=r["dbdc_p"], equalize=r["equalize"], equalize_if_pairs=True),
            PaCConfig(act_iters=r["pac_act_iters"], weight_iters=r["pac_weight_iters"], loss=r["pac_loss"],
                      feature_weight=r["pac_feature_weight"]))


def time_calibration(args, method, patches, before=False):
    """Seconds of ``quantize()`` with ``method`` (a --quant_method value, or ``dbdc_pac_recipe``: dbdc_pac
    at the bit width's defaults) from a fresh float model; ``before``: PaC's PyNative path with
    the op-by-op quantizer gradient (the code before #16)."""
    from src.quantlib import CalibrationConfig, PaCConfig, QuantConfig, quantize
    from src.weights.loader import load_for_inference
    fp_net = load_for_inference(args.model, args.variant, args.scale, args.pre_trained)[0]
    if method == "dbdc_pac_recipe":
        calib, pac = _recipe_settings(args.bits)
    else:
        calib = CalibrationConfig("dbdc" if method == "dbdc_pac" else method)
        pac = PaCConfig(graph=not before) if method == "dbdc_pac" else None
    with op_by_op_quantizers() if before else contextlib.nullcontext():
        start = time.perf_counter()
        quantize(fp_net, QuantConfig(args.bits, args.bits), patches, calib, pac)
        return time.perf_counter() - start


def time_placement(args, placement, patches):
    """Seconds of dbdc_pac at the bit width's defaults as eval.py runs it, with ``placement`` 'ptq4sr' (conv
    inputs and weights) or 'deploy' (also finding the deployment sites on the mobile graph, then
    calibrating and refining them: :mod:`src.quantlib.deploy`)."""
    from dataclasses import replace
    from src.export.deploy_calibration import deploy_sites
    from src.quantlib import QuantConfig, quantize
    from src.weights.loader import load_for_inference
    fp_net = load_for_inference(args.model, args.variant, args.scale, args.pre_trained)[0]
    calib, pac = _recipe_settings(args.bits)
    start = time.perf_counter()
    qcfg = QuantConfig(args.bits, args.bits, placement=placement)
    if placement == "deploy":
        qcfg = replace(qcfg, sites=[site.as_list() for site in deploy_sites(fp_net, patches[:1])])
    quantize(fp_net, qcfg, patches, calib, pac)
    return time.perf_counter() - start


def placement_table(args, patches):
    """dbdc_pac (defaults) with the ptq4sr and the deploy placement in ``args.placement_rounds``
    interleaved rounds (median of each), so load from other jobs falls on both alike."""
    times = {"ptq4sr": [], "deploy": []}
    for _ in range(args.placement_rounds):
        for placement in times:
            times[placement].append(time_placement(args, placement, patches))
    before, after = statistics.median(times["ptq4sr"]), statistics.median(times["deploy"])
    print(f"  dbdc_pac defaults: ptq4sr placement {before:6.1f} s   deploy placement {after:6.1f} s   "
          f"ratio {after / before:4.2f}x (median of {args.placement_rounds} interleaved rounds)", flush=True)
    return [{"method": "dbdc_pac (defaults), ptq4sr -> deploy placement", "before_s": round(before, 2),
             "after_s": round(after, 2), "speedup": round(before / after, 2),
             "rounds": {k: [round(v, 2) for v in vs] for k, vs in times.items()}}]


def calibration_table(args, methods):
    from src.data.calib_data import calibration_patches
    n_colors = 1 if "y" in args.variant.lower().split("_") else 3
    patches = calibration_patches(args.calib_path, args.calib_num, args.scale, n_colors=n_colors)
    time_calibration(args, "minmax", patches[:4])  # warm-up: first graph compile and kernel loads
    rows = []
    for method in methods:
        after = time_calibration(args, method, patches)
        before = time_calibration(args, method, patches, before=True) if method == "dbdc_pac" else after
        rows.append({"method": method, "before_s": round(before, 2), "after_s": round(after, 2),
                     "speedup": round(before / after, 2)})
        print(f"  {method:10s} before {before:8.1f} s   after {after:7.1f} s   speed-up {before / after:5.1f}x",
              flush=True)
        if method == "dbdc_pac":  # what eval.py runs now by default (the recipe), against the same "before"
            recipe = time_calibration(args, "dbdc_pac_recipe", patches)
            rows.append({"method": "dbdc_pac (defaults now)", "before_s": round(before, 2),
                         "after_s": round(recipe, 2), "speedup": round(before / recipe, 2)})
            print(f"  {'dbdc_pac, defaults now':10s}  {recipe:7.1f} s ({before / recipe:.1f}x the previous default)",
                  flush=True)
    return rows


def _qat_steps(args):
    """{label: step function}: float, QAT after, QAT before (op-by-op quantizer gradient)."""
    import numpy as np
    import mindspore as ms
    from mindspore import Tensor, nn
    from src.engine.losses import SRLoss
    from src.engine.train_step import TrainStep
    from src.models.registry import create_model
    from src.quantlib.quant_layers import QuantConfig, quant_layers, quantize_model
    rng = np.random.default_rng(0)
    lr = Tensor(rng.random((args.qat_batch, 3, args.qat_patch, args.qat_patch)).astype(np.float32))
    hr_side = args.qat_patch * args.scale
    hr = Tensor(rng.random((args.qat_batch, 3, hr_side, hr_side)).astype(np.float32))
    freeze = Tensor(0.0, ms.float32)
    steps = {}
    for label in ("float", "QAT after", "QAT before"):
        net = create_model(args.model, args.variant, args.scale, form="deploy")
        if label != "float":
            with op_by_op_quantizers() if label == "QAT before" else contextlib.nullcontext():
                quantize_model(net, QuantConfig(args.bits, args.bits))
            for _, layer in quant_layers(net):
                layer.act_quant.set_bounds(-0.1, 1.5)
                shape = layer.weight_quant.lower.shape
                layer.weight_quant.set_bounds(np.full(shape, -0.5), np.full(shape, 0.5))
        step = TrainStep(SRLoss(net), nn.Adam(net.trainable_params(), learning_rate=1e-5))
        steps[label] = (lambda s: lambda: s(lr, hr, freeze)[0].asnumpy())(step)
    return steps


def qat_table(args):
    steps = _qat_steps(args)
    for run in steps.values():  # compile and warm up
        run()
        run()
    times = {label: [] for label in steps}
    for _ in range(args.qat_rounds):
        for label, run in steps.items():
            start = time.perf_counter()
            for _ in range(args.qat_steps):
                run()
            times[label].append((time.perf_counter() - start) / args.qat_steps * 1000)
    base = statistics.median(times["float"])
    rows = []
    for label, values in times.items():
        ms_step = statistics.median(values)
        rows.append({"step": label, "ms": round(ms_step, 1), "ratio_to_float": round(ms_step / base, 2)})
        print(f"  {label:10s} {ms_step:7.1f} ms/step   {ms_step / base:4.2f}x float", flush=True)
    return rows


def main(argv=None):
    args = parse_args(argv)
    methods = check_args(args)
    from src.engine.context import init_context
    from src.utils.atomic import atomic_target
    init_context("CPU", "graph")
    result = {"model": f"{args.model}-{args.variant} x{args.scale}", "bits": args.bits, "calib_num": args.calib_num}
    print(f"calibration of {result['model']}, W{args.bits}A{args.bits}, {args.calib_num} patches "
          "(before: PaC in PyNative with hooks; after: compiled step)", flush=True)
    if methods:
        result["calibration"] = calibration_table(args, methods)
    if args.placement_rounds:
        from src.data.calib_data import calibration_patches
        patches = calibration_patches(args.calib_path, args.calib_num, args.scale,
                                      n_colors=1 if args.model == "sesr" else 3)
        time_placement(args, "deploy", patches[:4])  # warm-up: compiles and kernel loads
        result["placement"] = placement_table(args, patches)
    if args.qat_rounds:
        print(f"training step, batch {args.qat_batch} of {args.qat_patch}x{args.qat_patch} (median of "
              f"{args.qat_rounds} interleaved rounds of {args.qat_steps} steps)", flush=True)
        result["train_step"] = qat_table(args)
    if args.json:
        with atomic_target(args.json) as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(result, f, indent=2)
        print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
