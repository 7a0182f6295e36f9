"""Reported = shipped, per zoo model: float / eval.py's quantized PSNR / the int8 TFLite file's / the int8 .ort file's.

For each ``model:variant:scale:checkpoint`` and each method, the user's own commands run as
subprocesses: ``eval.py --quant_method M --w_bit 8 --a_bit 8 --save_quant_ckpt Q`` (defaults:
deploy placement at W8A8), ``export.py --pre_trained Q --file_format TFLITE|ORT --quant int8``
and ``eval.py --pre_trained FILE``; the PSNRs come from their result JSON files.

    python scripts/deploy_fidelity.py --data_path ../shared/data --calib_path ../shared/data/train \\
        --models abpn:M4C28:3:/work/ck/abpn_x3.ckpt,sesr:M5:2:pretrained/sesr_M5_x2.ckpt \\
        --methods dbdc_pac,dbdc_recon --work /work/ck/deploy --out docs/deploy_zoo.json

``--table JSON [--md docs/deploy_zoo.md] [--readme docs/quantization.md]`` writes the tables from a JSON only
(no run): the markdown file and the README block between ``<!-- deploy_zoo -->`` markers.
``--from_log LOG --command "..." --out JSON`` rebuilds the JSON from the rows a run printed.
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import _bootstrap  # noqa: E402,F401  pylint: disable=unused-import,wrong-import-position  (the project root on sys.path)

from src.utils.readme_block import write_block  # noqa: E402  pylint: disable=wrong-import-position
SETS = ("Set5", "Set14")


def _run(args, log):
    cmd = [sys.executable] + args
    log("$ " + " ".join(args))
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout


def _psnr(path, key="results"):
    with open(path, encoding="utf-8") as fh:
        report = json.load(fh)
    return {s: round(report[key][s]["psnr"], 4) for s in SETS if s in report.get(key, {})}, report


def measure(spec, method, args, log):
    """One row: the calibrated checkpoint's reported PSNR, and its int8 TFLite and .ort files' PSNR."""
    model, variant, scale, ckpt = spec.split(":")
    # the checkpoint's name is part of the stem: two checkpoints of one architecture (SESR-M5 x2 with PReLU and
    # with ReLU) must not write the same files
    stem = os.path.join(args.work, f"{os.path.splitext(os.path.basename(ckpt))[0]}_{model}_{variant}_x{scale}_{method}")
    common = ["--model", model, "--variant", variant, "--scale", scale, "--data_path", args.data_path,
              "--eval_datasets", ",".join(SETS)]
    qckpt = stem + ".ckpt"
    if not (args.reuse and os.path.exists(qckpt) and os.path.exists(stem + "_eval.json")):
        _run(["eval.py"] + common + ["--pre_trained", ckpt, "--quant_method", method, "--w_bit", "8", "--a_bit",
                                     "8", "--calib_path", args.calib_path, "--save_quant_ckpt", qckpt,
                                     "--result_file", stem + "_eval.json"], log)
    reported, report = _psnr(stem + "_eval.json")
    row = {"model": f"{model}-{variant} x{scale} ({os.path.basename(ckpt)})", "method": method, "checkpoint": ckpt,
           "placement": report["quant"].get("placement", "ptq4sr"),
           "calibration_seconds": report["quant"]["calibration_seconds"],
           "float": _psnr(stem + "_eval.json", "results_fp")[0], "reported": reported}
    for fmt, ext in (("TFLITE", "tflite"), ("ORT", "ort")):
        path = f"{stem}_int8.{ext}"
        try:
            _run(["export.py", "--model", model, "--variant", variant, "--scale", scale, "--pre_trained", qckpt,
                  "--file_format", fmt, "--quant", "int8", "--export_file", path], log)
            _run(["eval.py", "--pre_trained", path, "--data_path", args.data_path, "--eval_datasets",
                  ",".join(SETS), "--result_file", f"{stem}_{ext}.json"], log)
            row[ext] = _psnr(f"{stem}_{ext}.json")[0]
        except RuntimeError as exc:  # an export that refuses: recorded, the other rows go on
            row[ext] = None
            row[ext + "_error"] = str(exc)[-300:]
    return row


def table_lines(rows):
    """Markdown table of the rows: float, reported, files, shipped - reported, calibration seconds."""
    lines = ["| model | method | float Set5 / Set14 | reported (eval.py) | int8 TFLite | int8 .ort | "
             "TFLite - reported | TFLite - float | calibration s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        def pair(d):
            return " / ".join(f"{d[s]:.2f}" for s in SETS) if d else "not written"

        def diff(a, b):
            return " / ".join(f"{a[s] - b[s]:+.3f}" for s in SETS) if a and b else "-"
        lines.append(f"| {r['model']} | {r['method']} ({r['placement']}) | {pair(r['float'])} | {pair(r['reported'])} | "
                     f"{pair(r['tflite'])} | {pair(r['ort'])} | {diff(r['tflite'], r['reported'])} | "
                     f"{diff(r['tflite'], r['float'])} | {r['calibration_seconds']:.0f} |")
    return lines


def write_tables(json_path, md_path, readme, title="Reported = shipped: the zoo at W8A8"):
    with open(json_path, encoding="utf-8") as fh:
        data = json.load(fh)
    shown = os.path.relpath(os.path.abspath(json_path), ROOT)
    commands = data.get("commands") or [data["command"]]
    body = ["Written by " + ", then ".join(f"`{c}`" for c in commands)
            + f" (then `python scripts/deploy_fidelity.py --table {shown}`); PSNR-Y in dB, W8A8, defaults only.",
            ""] + table_lines(data["rows"])
    if md_path:
        with open(md_path, "w", encoding="utf-8") as fh:
            fh.write(f"# {title}\n\n" + "\n".join(body) + "\n")
    if readme:
        write_block(readme, "deploy_zoo", body)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="")
    parser.add_argument("--methods", default="dbdc_pac,dbdc_recon")
    parser.add_argument("--data_path", default="../shared/data")
    parser.add_argument("--calib_path", default="../shared/data/train")
    parser.add_argument("--work", default="outputs/deploy_fidelity")
    parser.add_argument("--out", default="docs/deploy_zoo.json")
    parser.add_argument("--table", default="", help="write the tables from this JSON only")
    parser.add_argument("--reuse", action="store_true",
                        help="keep a calibrated checkpoint and its eval.py report already in --work (files again)")
    parser.add_argument("--from_log", default="",
                        help="rebuild --out from a run's printed rows (one JSON line per row); --command: its command")
    parser.add_argument("--command", default="", help="with --from_log: the command that printed the log")
    parser.add_argument("--title", default="Reported = shipped: the zoo at W8A8", help="title of the --md file")
    parser.add_argument("--md", default="docs/deploy_zoo.md")
    parser.add_argument("--readme", default="docs/quantization.md", help="the Markdown file holding the deploy_zoo block")
    args = parser.parse_args()
    if args.table:
        write_tables(args.table, args.md, args.readme, args.title)
        return 0
    if args.from_log:
        with open(args.from_log, encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.startswith("{")]
        for row in rows:  # labels of runs made before the checkpoint was part of the label
            name = os.path.basename(row["checkpoint"])
            if not row["model"].endswith(f"({name})"):
                row["model"] = f"{row['model']} ({name})"
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump({"command": args.command, "rows": rows}, fh, indent=1)
        write_tables(args.out, args.md, args.readme, args.title)
        return 0
    if not args.models:
        parser.error("--models model:variant:scale:checkpoint[,...] is required (or --table JSON)")
    os.makedirs(args.work, exist_ok=True)
    rows, previous, commands = [], {}, []
    if os.path.exists(args.out):
        with open(args.out, encoding="utf-8") as fh:
            old = json.load(fh)
        previous = {(r["model"], r["method"]): r for r in old.get("rows", [])}
        commands = old.get("commands") or ([old["command"]] if old.get("command") else [])
    command = "python scripts/deploy_fidelity.py " + " ".join(sys.argv[1:])
    commands = [c for c in commands if c != command] + [command]
    for spec in args.models.split(","):
        for method in args.methods.split(","):
            start = time.time()
            row = measure(spec, method, args, print)
            row["seconds"] = round(time.time() - start, 1)
            print(json.dumps(row))
            previous[(row["model"], row["method"])] = row
            rows = list(previous.values())
            with open(args.out, "w", encoding="utf-8") as fh:
                json.dump({"commands": commands, "rows": rows}, fh, indent=1)
    write_tables(args.out, args.md, args.readme)
    print("\n".join(table_lines(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
