"""Head to head: our W8A8 int8 TFLite against the third-party int8 files, same float weights, same images.

    python scripts/head_to_head.py --shared ../shared --work outputs/head_to_head --out docs/head_to_head.json

For MLPerf Mobile's EDSR-F32B5 x2 and the ABPN authors' ABPN-M4C28 x3 (``base7``), each step is the
user's own command, run as a subprocess:

1. ``scripts/convert_weights.py`` imports their float weights (EDSR: the fp32 .tflite; ABPN: the
   Keras SavedModel);
2. ``eval.py --quant_method dbdc_pac --w_bit 8 --a_bit 8 --calib_path ... --save_quant_ckpt Q`` (the
   defaults: deployment placement, so the reported PSNR is the file's) gives the float and reported rows;
3. ``export.py --pre_trained Q --file_format TFLITE --quant int8 --io_dtype uint8 --input_shape
   1,3,H,W`` writes our file at their file's input shape with uint8 pixel IO, as theirs;
4. ``eval.py --pre_trained FILE`` scores every file (ours, their QAT and PTQ int8, EDSR's fp32) on
   Set5, Set14 and the DIV2K validation crops (their files take pixels in 0..255: read from their
   uint8 input and proven on a test image, src/runtime/runners.py).

Then, in this process, LiteRT latency (XNNPACK, ``--threads`` threads) of every file at its own input
shape, all files in one run: the median over ``--rounds`` rounds in which each file runs ``--runs``
times in turn (this machine is shared; alternating keeps the ratios fair), and XNNPACK's coverage.
The ABPN authors time fixed-shape copies of their files (``*_time.tflite``, 1x360x640x3); those are
timed, their dynamic-shape files scored. A step whose output exists with the same command recorded
beside it (``<file>.cmd``) is not run again; anything else is.

``--table JSON`` writes docs/head_to_head.md and the README block between ``<!-- head_to_head -->``
markers from a JSON only.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import _bootstrap  # noqa: E402,F401  pylint: disable=unused-import,wrong-import-position  (the project root on sys.path)

from src.utils.readme_block import write_block  # noqa: E402  pylint: disable=wrong-import-position

SETS = ("Set5", "Set14", "DIV2K_valid_crop256")
# name, scale, source of the float weights, their files {label: (scored file, timed file)}, input HxW
PAIRS = (
    ("edsr", 2, "weights/mlperf_edsr_x2/edsr_f32b5_fp32.tflite", "MLPerf Mobile EDSR-F32B5 x2",
     {"their fp32": ("edsr_f32b5_fp32.tflite", "edsr_f32b5_fp32.tflite"),
      "their QAT int8": ("edsr_f32b5_QAT.tflite", "edsr_f32b5_QAT.tflite"),
      "their PTQ int8": ("edsr_f32b5_full_qint8.tflite", "edsr_f32b5_full_qint8.tflite")}, (540, 960)),
    ("abpn", 3, "weights/abpn_authors_tf_x3/saved_model", "ABPN authors' base7 (ABPN-M4C28) x3",
     {"their QAT int8": ("base7_D4C28_bs16ps64_lr1e-3_qat.tflite", "base7_D4C28_bs16ps64_lr1e-3_qat_time.tflite"),
      "their PTQ int8": ("base7_D4C28_bs16ps64_lr1e-3.tflite", "base7_D4C28_bs16ps64_lr1e-3_time.tflite")},
     (360, 640)),
)


def _run(args, outputs, log):
    """Run ``python args`` in the repository unless every path of ``outputs`` exists with this command
    recorded beside it (``<path>.cmd``); SystemExit with the last lines when it fails."""
    command = " ".join(args)
    if all(os.path.exists(p) and os.path.exists(p + ".cmd") and open(p + ".cmd", encoding="utf-8").read() == command
           for p in outputs):
        log(f"$ {command}  (done before: outputs kept)")
        return
    log(f"$ {command}")
    proc = subprocess.run([sys.executable] + args, cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-6:])
        raise SystemExit(f"{args[0]} failed (exit {proc.returncode}):\n{tail}")
    for path in outputs:
        with open(path + ".cmd", "w", encoding="utf-8") as fh:
            fh.write(command)


def _psnr_ssim(path, key="results"):
    with open(path, encoding="utf-8") as fh:
        report = json.load(fh)
    return {s: [round(report[key][s]["psnr"], 4), round(report[key][s]["ssim"], 4)] for s in SETS
            if s in report.get(key, {})}, report


def measure_pair(pair, args, log):
    """One model's rows: float checkpoint, reported, our int8 file, their files (PSNR/SSIM per set)."""
    model, scale, source, title, theirs, (h, w) = pair
    shared_dir = os.path.dirname(os.path.join(args.shared, source))
    work = os.path.join(args.work, model)
    os.makedirs(work, exist_ok=True)
    ckpt, qckpt = os.path.join(work, f"{model}_float.ckpt"), os.path.join(work, f"{model}_w8a8.ckpt")
    data = ["--data_path", os.path.join(args.shared, "data"), "--eval_datasets", ",".join(SETS)]
    _run(["scripts/convert_weights.py", "--src", os.path.join(args.shared, source), "--dst", ckpt], [ckpt], log)
    files, reported, rep = {}, {}, None
    variant = "f32b5" if model == "edsr" else "M4C28"
    for method in args.methods.split(","):
        tag = "" if method == "dbdc_pac" else "_" + method  # the default method keeps the first run's names
        qckpt, report = os.path.join(work, f"{model}_w8a8{tag}.ckpt"), os.path.join(work, f"eval_w8a8{tag}.json")
        _run(["eval.py", "--pre_trained", ckpt, "--model", model, "--scale", str(scale), "--variant", variant,
              "--quant_method", method, "--w_bit", "8", "--a_bit", "8", "--calib_path",
              os.path.join(args.shared, "data", "train"), "--save_quant_ckpt", qckpt, "--result_file", report] + data,
             [qckpt, report], log)
        float_row, rep = _psnr_ssim(report, "results_fp")
        reported[f"reported (eval.py, {method} W8A8)"] = _psnr_ssim(report)[0]
        ours = os.path.join(work, f"{model}_w8a8{tag}_uint8_{h}x{w}.tflite")
        _run(["export.py", "--pre_trained", qckpt, "--model", model, "--scale", str(scale), "--variant", variant,
              "--file_format", "TFLITE", "--quant", "int8", "--io_dtype", "uint8", "--input_shape", f"1,3,{h},{w}",
              "--export_file", ours], [ours], log)
        files["ours W8A8 int8" + ("" if method == "dbdc_pac" else f" ({method})")] = (ours, ours)
    files.update({label: (os.path.join(shared_dir, a), os.path.join(shared_dir, b)) for label, (a, b) in theirs.items()})
    rows = {"float (imported checkpoint)": float_row, **reported}
    for label, (scored, _) in files.items():
        result = os.path.join(work, "eval_" + label.replace(" ", "_") + ".json")
        _run(["eval.py", "--pre_trained", scored, "--result_file", result] + data, [result], log)
        rows[label] = _psnr_ssim(result)[0]
    return {"model": title, "key": model, "scale": scale, "input_hw": [h, w], "source": source, "methods": args.methods,
            "placement": rep["quant"].get("placement"), "calibration_seconds": rep["quant"].get("calibration_seconds"),
            "psnr_ssim": rows, "files": {k: {"scored": v[0], "timed": v[1]} for k, v in files.items()}}


def time_files(rows, args, log):
    """Latency (ms) and XNNPACK coverage of every timed file of every row, all in this one run."""
    from src.runtime.tflite_check import latency_samples, xnnpack_partitions  # pylint: disable=import-outside-toplevel
    timed = [(row, label, spec["timed"]) for row in rows for label, spec in row["files"].items()]
    samples = latency_samples([path for _, _, path in timed], args.threads, args.rounds, args.warmup, args.runs,
                              lambda k, samples: log(f"latency round {k}/{args.rounds}: " + ", ".join(
                                  f"{label} {s[-1]:.0f} ms" for (_, label, _), s in zip(timed, samples))))
    for (row, label, path), sample in zip(timed, samples):
        row.setdefault("latency_ms", {})[label] = round(statistics.median(sample), 1)
        row.setdefault("xnnpack", {})[label] = xnnpack_partitions(path, args.threads)
        row.setdefault("size_kb", {})[label] = round(os.path.getsize(path) / 1024, 1)


def table_lines(data):
    """Markdown tables of a head-to-head JSON."""
    lines = []
    for row in data["rows"]:
        h, w = row["input_hw"]
        lines += [f"**{row['model']}** (latency at 1x{h}x{w}x3, uint8 pixels 0..255, LiteRT XNNPACK "
                  f"{data['threads']} threads):", "",
                  "| file | " + " | ".join(f"{s} PSNR / SSIM" for s in SETS) + " | vs their QAT (Set5 / Set14) | "
                  "latency ms | XNNPACK nodes | size KB |",
                  "|---" * (len(SETS) + 5) + "|"]
        qat = row["psnr_ssim"].get("their QAT int8", {})
        for label, per_set in row["psnr_ssim"].items():
            cells = [f"{per_set[s][0]:.2f} / {per_set[s][1]:.4f}" if s in per_set else "-" for s in SETS]
            delta = " / ".join(f"{per_set[s][0] - qat[s][0]:+.2f}" for s in SETS[:2]) if qat and label in row["files"] \
                else "-"
            xnn = row.get("xnnpack", {}).get(label)
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {delta} | "
                         f"{row.get('latency_ms', {}).get(label, '-')} | "
                         + (f"{xnn['delegated']}/{xnn['nodes']} in {xnn['partitions']}" if xnn else "-")
                         + f" | {row.get('size_kb', {}).get(label, '-')} |")
        lines += ["", _summary(row), ""]
    return lines


def _summary(row):
    """One line per model: each of our files against their QAT file (PSNR on every set, latency ratio)."""
    qat_label = "their QAT int8"
    qat, lat = row["psnr_ssim"].get(qat_label), row.get("latency_ms", {})
    parts = []
    for label in (k for k in row["files"] if k.startswith("ours")):
        ours = row["psnr_ssim"][label]
        gains = " / ".join(f"{ours[s][0] - qat[s][0]:+.3f}" for s in SETS if s in ours and s in qat)
        lost = " / ".join(f"{ours[s][0] - row['psnr_ssim']['float (imported checkpoint)'][s][0]:+.3f}" for s in SETS)
        speed = f", {lat[qat_label] / lat[label]:.2f}x their QAT file's speed" if label in lat and qat_label in lat else ""
        parts.append(f"{label}: {gains} dB against their QAT file ({', '.join(SETS)}), {lost} dB against the float "
                     f"checkpoint{speed}")
    return "; ".join(parts) + "."


def summary_lines(data):
    """The README's short table: per model, their int8 files and ours (PSNR-Y on Set5 /
    Set14, difference from float, LiteRT ms), with the page holding the whole table."""
    lines = ["| model | file | Set5 / Set14 PSNR-Y | vs float | LiteRT ms |", "|---|---|---|---|---|"]
    for row in data["rows"]:
        fp = row["psnr_ssim"]["float (imported checkpoint)"]
        for label in [k for k in row["files"] if k.endswith("int8")]:
            per_set = row["psnr_ssim"][label]
            lines.append(f"| {row['model']} | {label} | {per_set['Set5'][0]:.2f} / {per_set['Set14'][0]:.2f} | "
                         f"{per_set['Set5'][0] - fp['Set5'][0]:+.2f} / {per_set['Set14'][0] - fp['Set14'][0]:+.2f} | "
                         f"{row.get('latency_ms', {}).get(label, '-')} |")
    lines += ["", "Each model's files timed in one run (LiteRT XNNPACK, "
              f"{data['threads']} threads, at each file's own input shape); the whole table, the DIV2K crops "
              "and the commands: [docs/head_to_head.md](docs/head_to_head.md)."]
    return lines


def write_tables(json_path, md_path, readme, summary_md=""):
    with open(json_path, encoding="utf-8") as fh:
        data = json.load(fh)
    shown = os.path.relpath(os.path.abspath(json_path), ROOT)
    commands = data.get("commands") or [data["command"]]
    body = ["Written by " + ", then ".join(f"`{c}`" for c in commands)
            + f" (then `python scripts/head_to_head.py --table {shown}`); each model's files are timed in one run; PSNR-Y (dB) "
            "/ SSIM, shave = scale, MATLAB-bicubic LR. Every file is scored by `eval.py --pre_trained FILE`.", ""]
    body += table_lines(data)
    if md_path:
        with open(md_path, "w", encoding="utf-8") as fh:
            fh.write("# Head to head: our int8 TFLite files against the third-party ones\n\n" + "\n".join(body))
    if readme:
        write_block(readme, "head_to_head", body)
    if summary_md:
        write_block(summary_md, "head_to_head_summary", summary_lines(data))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default="../shared", help="folder holding weights/ and data/ (../shared)")
    parser.add_argument("--work", default="outputs/head_to_head", help="where checkpoints, files and reports go")
    parser.add_argument("--models", default="edsr,abpn", help="comma list of edsr, abpn")
    parser.add_argument("--methods", default="dbdc_pac", help="our calibration methods (eval.py --quant_method), "
                                                             "one int8 file each; dbdc_pac is the default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="docs/head_to_head.json")
    parser.add_argument("--md", default="docs/head_to_head.md")
    parser.add_argument("--readme", default="docs/evaluation.md", help="the Markdown file holding the head_to_head block")
    parser.add_argument("--summary_md", default="README.md",
                        help="the Markdown file holding the short head_to_head_summary block ('' = none)")
    parser.add_argument("--table", default="", help="write the tables from this JSON only (no run)")
    args = parser.parse_args(argv)
    if args.table:
        write_tables(args.table, args.md, args.readme, args.summary_md)
        return 0
    wanted = [m for m in args.models.split(",") if m]
    unknown = sorted(set(wanted) - {p[0] for p in PAIRS})
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)}; choose from edsr, abpn")
    log = lambda line: print(line, flush=True)  # noqa: E731
    rows = [measure_pair(pair, args, log) for pair in PAIRS if pair[0] in wanted]
    time_files(rows, args, log)
    command = "python scripts/head_to_head.py " + " ".join(argv if argv is not None else sys.argv[1:])
    data = {"commands": [], "threads": args.threads, "runs": args.runs, "rounds": args.rounds, "rows": []}
    if os.path.exists(args.out):  # rows of the models not run now are kept, with the commands that made them
        with open(args.out, encoding="utf-8") as fh:
            data = json.load(fh)
        data.setdefault("commands", [data.pop("command")] if "command" in data else [])
    by_model = {r.get("key"): r for r in data["rows"]}
    by_model.update({r["key"]: r for r in rows})
    data["rows"] = [by_model[pair[0]] for pair in PAIRS if pair[0] in by_model]
    data["commands"] = [c for c in data["commands"] if c != command] + [command]
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
    print("\n".join(table_lines(data)))
    write_tables(args.out, args.md, args.readme, args.summary_md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
