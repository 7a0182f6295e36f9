"""Post-training quantization sweep: methods x bit widths -> Markdown table, JSON and a PSNR-vs-bits plot.

    python scripts/ptq_sweep.py --config_path DIV2K_config.yaml --model abpn --scale 3 \
        --pre_trained abpn_x3.ckpt --data_path ../shared/data --eval_datasets Set5,Set14 \
        --calib_path ../shared/data/train --methods minmax,percentile,omse,dbdc,dbdc_pac --bits 8,6,4

Every other flag is an eval.py flag. Bits are used for weights and activations
alike (WbAb); the first and last layers stay W8A8 (int8_scope). Writes
``<output_path>/ptq_sweep_<model>_<variant>_x<scale>.{md,json,png}`` and one result file per run
(``..._w<b>a<b>_<method>.json``, eval.py's ``--result_file``); ``--reuse True`` takes a run's result
from that file only when the identity written beside it (``<result>.run``: every setting of the run
but where outputs go, the SHA-1 of the checkpoint file, and the names, sizes and times of the evaluation
and calibration images) equals this run's, so a sweep that stopped
goes on where it was and nothing measured with other weights, data, sets or calibration options is
taken; ``scripts/ptq_zoo_table.py`` joins the sweeps of several models into one table.
"""
import argparse
import hashlib
import json
import os
import sys

import _bootstrap  # noqa: E402,F401  pylint: disable=unused-import,wrong-import-position  (the project root on sys.path)

import model_utils  # noqa: E402,F401  (CPU runtime defaults before mindspore loads)
from model_utils.config import get_config  # noqa: E402
from src.utils.atomic import atomic_target  # noqa: E402
from src.utils.psnr_plot import psnr_panels  # noqa: E402
from src.errors import UserError  # noqa: E402


def markdown(rows, sets):
    head = "| method | bits | " + " | ".join(f"{s} PSNR / SSIM" for s in sets) + " | calibration (s) |"
    lines = [head, "|" + "---|" * (3 + len(sets))]
    for r in rows:
        cells = " | ".join(f"{r['psnr'][s]:.2f} / {r['ssim'][s]:.4f}" for s in sets)
        lines.append(f"| {r['method']} | {r['label']} | {cells} | {r['seconds']:.1f} |")
    return "\n".join(lines)


def plot(rows, fp, sets, path, title):
    with psnr_panels(sets, fp, "bits (weights = activations)", title, path) as panels:
        for ax, name in panels:
            for method in dict.fromkeys(r["method"] for r in rows):
                pts = sorted((r["bits"], r["psnr"][name]) for r in rows if r["method"] == method)
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method)


# settings that say where results go, not what they are
_OUTPUT_KEYS = ("result_file", "output_path", "save_sr", "save_quant_ckpt", "enable_modelarts", "cli_keys")


def _folder_stamp(folder):
    """SHA-1 of the (relative path, size, modification time) of every file under ``folder`` ('' if none):
    images replaced or added under the same path make another run."""
    digest = hashlib.sha1()
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            try:
                info = os.stat(path)
            except OSError:
                continue
            digest.update(f"{os.path.relpath(path, folder)}|{info.st_size}|{info.st_mtime_ns}\n".encode())
    return digest.hexdigest() if os.path.isdir(folder) else ""


def run_identity(cfg):
    """What determines a run's result: every setting but where outputs go, the SHA-1 of the
    ``--pre_trained`` file (another checkpoint at the same path is another run), and stamps of the
    evaluation sets' and calibration images' files."""
    from src.paths import resolve_path  # pylint: disable=import-outside-toplevel
    values = {k: v for k, v in sorted(cfg.to_dict().items()) if k not in _OUTPUT_KEYS}
    digest = hashlib.sha1()
    with open(resolve_path(cfg, cfg.pre_trained), "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    data = resolve_path(cfg, cfg.data_path)
    stamps = {name: _folder_stamp(os.path.join(data, "benchmark", name)) for name in cfg.eval_datasets}
    stamps["calibration"] = _folder_stamp(resolve_path(cfg, cfg.calib_path)) if cfg.calib_path else ""
    return json.loads(json.dumps({"settings": values, "checkpoint_sha1": digest.hexdigest(), "files": stamps},
                                 default=str))


def _earlier(path, identity):
    """The result file of an earlier run with this ``identity`` (dict), or None when it is missing,
    unreadable or was made by another run (its ``.run`` file differs or is missing)."""
    try:
        with open(path + ".run", encoding="utf-8") as fh:
            if json.load(fh) != identity:
                return None
        with open(path, encoding="utf-8") as fh:
            report = json.load(fh)
        return report if report["results"] and report["results_fp"] else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _parser():
    parser = argparse.ArgumentParser(
        prog="ptq_sweep.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Every other flag is an eval.py flag (python eval.py --help), e.g. --model, --pre_trained, "
               "--data_path, --eval_datasets, --calib_path.")
    parser.add_argument("--methods", default="minmax,percentile,omse,dbdc,dbdc_pac",
                        help="comma-separated eval.py --quant_method values")
    parser.add_argument("--bits", default="8,6,4", help="comma-separated bit widths (2..8), weights = activations")
    parser.add_argument("--reuse", default="False", choices=("True", "False"),
                        help="take a run's result from an earlier sweep when its recorded identity is this run's")
    return parser


def main(argv=None):
    """Run the sweep; a user error (bad option, config file, data, full disk) is one line, exit code 2."""
    try:
        return _sweep(list(sys.argv[1:] if argv is None else argv))
    except (ValueError, OSError) as exc:
        from src.errors import print_user_error  # pylint: disable=import-outside-toplevel
        return print_user_error(exc)  # a defect is raised again: its traceback


def _sweep(argv):
    args, argv = _parser().parse_known_args(argv)
    from model_utils.validate import RULES  # pylint: disable=import-outside-toplevel
    choices = [m for m in RULES["quant_method"].choices if m]  # the eval.py methods, declared once
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in choices]
    if not methods or unknown:
        raise UserError(f"--methods '{args.methods}': give comma-separated methods from {', '.join(choices)}"
                         + (f" ({', '.join(unknown)} is not one)" if unknown else ""))
    bits_text = args.bits
    if not all(b.strip().isdigit() and 2 <= int(b) <= 8 for b in bits_text.split(",")):
        raise UserError(f"--bits {bits_text}: give comma-separated bit widths between 2 and 8, e.g. 8,6,4")
    bits = [int(b) for b in bits_text.split(",")]
    reuse = args.reuse
    base = get_config(argv, description="PTQ sweep")
    from src.engine.evaluate import run_evaluation  # pylint: disable=import-outside-toplevel
    from src.paths import resolve_path  # pylint: disable=import-outside-toplevel
    from src.engine.context import init_context  # pylint: disable=import-outside-toplevel
    init_context(base.device_target, base.mode)
    rows, fp = [], None
    out_dir = resolve_path(base, base.output_path)
    stem = os.path.join(out_dir, f"ptq_sweep_{base.model}_{base.variant}_x{base.scale}")
    from src.utils.progress import ProgressLog  # pylint: disable=import-outside-toplevel
    progress = ProgressLog("sweep", len(bits) * len(methods), print, every_s=0)
    for b in bits:
        for method in methods:
            cfg = base.replace(quant_method=method, w_bit=b, a_bit=b, save_quant_ckpt="",
                               result_file=f"{stem}_w{b}a{b}_{method}.json")
            identity = run_identity(cfg)
            report = reuse == "True" and _earlier(cfg.result_file, identity)
            reused = bool(report)
            if not reused:
                if os.path.exists(cfg.result_file + ".run"):  # the result is about to change: its identity goes first
                    os.remove(cfg.result_file + ".run")
                report = run_evaluation(cfg, log=lambda *_: None)
                with atomic_target(cfg.result_file + ".run") as tmp, open(tmp, "w", encoding="utf-8") as fh:
                    json.dump(identity, fh, indent=1)
            fp = {k: v["psnr"] for k, v in report["results_fp"].items()}
            rows.append({"method": method, "bits": b, "label": f"W{b}A{b}",
                         "psnr": {k: v["psnr"] for k, v in report["results"].items()},
                         "ssim": {k: v["ssim"] for k, v in report["results"].items()},
                         "seconds": report["quant"]["calibration_seconds"]})
            print(f"W{b}A{b} {method:<11}" + "  ".join(f"{k} {v:.2f}" for k, v in rows[-1]["psnr"].items())
                  + f"  (calibration {rows[-1]['seconds']:.1f} s{', reused' if reused else ''})", flush=True)
            progress.update(len(rows))
    sets = list(fp)
    table = "FP32: " + ", ".join(f"{k} {v:.2f}" for k, v in fp.items()) + "\n\n" + markdown(rows, sets)
    with atomic_target(stem + ".md") as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(table + "\n")
    with atomic_target(stem + ".json") as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"fp": fp, "rows": rows}, fh, indent=2)
    plot(rows, fp, sets, stem + ".png", f"{base.model}-{base.variant} x{base.scale}")
    print(table)
    print(f"wrote {stem}.md, {stem}.json, {stem}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
