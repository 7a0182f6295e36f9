"""The README's model-zoo table and phone-path block, written from result JSON only.

    # measure: LiteRT latency, size and XNNPACK coverage of each zoo model's default int8 TFLite file
    python scripts/zoo_table.py --zoo docs/deploy_zoo.json --work /work/ck/deploy --out docs/zoo.json
    # the phone path's output (export.py --quant int8 ... writes <stem>_<tag>_phone.json)
    python scripts/zoo_table.py --phone outputs/abpn_M4C28_x3_w8a8_dbdc_pac_phone.json \
        --phone_command "python export.py ..." --phone_out docs/phone_abpn_x3.json
    # tables only, from the JSON (what the docs test checks): README blocks 'zoo' and 'phone_path'
    python scripts/zoo_table.py --table

The zoo rows: float and int8 TFLite PSNR-Y from ``docs/deploy_zoo.json`` (scripts/deploy_fidelity.py:
every file scored by ``eval.py --pre_trained FILE``), the method ``dbdc_pac`` (the default), and the
file's LiteRT latency (XNNPACK, 2 threads, at its own 1x360x640 input; all files timed in one run,
rounds alternating between files, median) and size.
"""
import argparse
import json
import os
import statistics
import sys

import _bootstrap  # noqa: E402,F401  pylint: disable=unused-import,wrong-import-position  (the project root on sys.path)

from src.utils.readme_block import write_block  # noqa: E402  pylint: disable=wrong-import-position

METHOD = "dbdc_pac"


def measure(zoo_path, work, rounds, log=print):
    """Rows for the zoo table: each default-method row of ``zoo_path`` with its int8 TFLite in ``work``."""
    from src.runtime.tflite_check import (latency_samples, op_names, read_model,  # pylint: disable=import-outside-toplevel
                                         xnnpack_partitions)
    zoo = json.load(open(zoo_path, encoding="utf-8"))
    rows = []
    for row in zoo["rows"]:
        if row["method"] != METHOD:
            continue
        name, variant_scale = row["model"].split("-", 1)
        variant, scale = variant_scale.split(" ")[0], variant_scale.split(" ")[1]
        ckpt_stem = os.path.splitext(os.path.basename(row["checkpoint"]))[0]
        path = os.path.join(work, f"{ckpt_stem}_{name}_{variant}_{scale}_{METHOD}_int8.tflite")
        if not os.path.isfile(path):  # files written before the checkpoint's name was part of the stem
            path = os.path.join(work, f"{name}_{variant}_{scale}_{METHOD}_int8.tflite")
            relu_file = "PRELU" not in op_names(read_model(path)) if os.path.isfile(path) else None
            if name == "sesr" and relu_file != ckpt_stem.endswith("_relu"):
                log(f"skipping {row['model']}: {path} was written from the other SESR checkpoint")
                continue
        if not os.path.isfile(path):
            raise SystemExit(f"error: {path} not found (run scripts/deploy_fidelity.py with --work {work} first)")
        rows.append({"model": row["model"], "float": row["float"], "tflite": row["tflite"], "file": path,
                     "size_kb": round(os.path.getsize(path) / 1024, 1),
                     "xnnpack": xnnpack_partitions(path)})
    samples = latency_samples([r["file"] for r in rows], rounds=rounds, warmup=3, runs=10,
                              on_round=lambda k, samples: log(f"latency round {k}/{rounds}: " + ", ".join(
                                  f"{s[-1]:.0f}" for s in samples) + " ms"))
    for row, sample in zip(rows, samples):
        row["latency_ms"] = round(statistics.median(sample), 1)
        row["file"] = os.path.basename(row["file"])
    return rows


def zoo_lines(data):
    """The zoo block (Markdown) from docs/zoo.json."""
    lines = [f"Written by `{data['command']}` from `docs/deploy_zoo.json` (every PSNR is `eval.py --pre_trained "
             "FILE` on the file); PSNR-Y (dB), Set5 / Set14, W8A8 `dbdc_pac` (the default); LiteRT: XNNPACK, "
             "2 threads, 1x360x640 LR input, this 2-core CPU.", "",
             "| model | float | int8 TFLite file | file - float | LiteRT ms | size KB | XNNPACK |",
             "|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        f, t = r["float"], r["tflite"]
        x = r["xnnpack"]
        lines.append(f"| {r['model']} | {f['Set5']:.2f} / {f['Set14']:.2f} | {t['Set5']:.2f} / {t['Set14']:.2f} | "
                     f"{t['Set5'] - f['Set5']:+.3f} / {t['Set14'] - f['Set14']:+.3f} | {r['latency_ms']:.1f} | "
                     f"{r['size_kb']:.0f} | {x['delegated']}/{x['nodes']} nodes, {x['partitions']} partition(s) |")
    return lines


# Set5 / Set14 PSNR-Y x3 as published (ETDS paper's table for ABPN, ETDS-S and ECBSR-M4C16, the published weights)
PUBLISHED_X3 = {"abpn-M4C28": (33.53, 29.78), "etds-M4C32": (33.49, 29.76), "ecbsr-M4C16": (33.07, 29.53)}


def published_lines(zoo):
    """The published-weights block (docs/evaluation.md) from docs/deploy_zoo.json's float rows."""
    lines = [f"Written by `python scripts/zoo_table.py --table` from the float rows of `docs/deploy_zoo.json` "
             f"(`{zoo['commands'][0].split(' --models')[0]} ...`: `eval.py` on each converted checkpoint); Set5 / Set14, "
             "x3, PSNR-Y (dB).", "", "| model | published | this project | difference |", "|---|---|---|---|"]
    seen = set()
    for row in zoo["rows"]:
        name = row["model"].split(" ")[0]
        if name not in PUBLISHED_X3 or name in seen:
            continue
        seen.add(name)
        pub, got = PUBLISHED_X3[name], row["float"]
        lines.append(f"| {name} | {pub[0]:.2f} / {pub[1]:.2f} | {got['Set5']:.4f} / {got['Set14']:.4f} | "
                     f"{got['Set5'] - pub[0]:+.3f} / {got['Set14'] - pub[1]:+.3f} |")
    return lines


def phone_lines(data):
    """The phone-path block from the saved phone summary (src/engine/phone.py's table)."""
    from src.engine.phone import summary_lines  # pylint: disable=import-outside-toplevel
    body = [line for line in summary_lines(data["summary"]) if line != ""]
    return [f"Printed by `{data['command']}` (output folder `{data['out']}`); every row measured in that run.",
            ""] + [b for b in body if b.startswith("|")] + [""] + \
        ["```text"] + [b for b in body if not b.startswith("|")] + ["```"]


def write_tables(zoo_json, phone_json, readme, evaluation_md=os.path.join("docs", "evaluation.md"),
                 deploy_zoo=os.path.join("docs", "deploy_zoo.json")):
    """Write the README's 'zoo' and 'phone_path' blocks and docs/evaluation.md's 'published' block."""
    if os.path.isfile(deploy_zoo) and os.path.isfile(evaluation_md):
        write_block(evaluation_md, "published", published_lines(json.load(open(deploy_zoo, encoding="utf-8"))))
    if zoo_json and os.path.isfile(zoo_json):
        write_block(readme, "zoo", zoo_lines(json.load(open(zoo_json, encoding="utf-8"))))
    if phone_json and os.path.isfile(phone_json):
        write_block(readme, "phone_path", phone_lines(json.load(open(phone_json, encoding="utf-8"))))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default="", help="docs/deploy_zoo.json: measure its default rows' files")
    parser.add_argument("--work", default="", help="the folder holding the zoo's int8 TFLite files")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default="docs/zoo.json")
    parser.add_argument("--phone", default="", help="a <stem>_phone.json written by export.py's phone path")
    parser.add_argument("--phone_command", default="", help="with --phone: the command that wrote it")
    parser.add_argument("--phone_out", default="docs/phone_abpn_x3.json")
    parser.add_argument("--readme", default="README.md")
    parser.add_argument("--evaluation_md", default=os.path.join("docs", "evaluation.md"))
    parser.add_argument("--deploy_zoo", default=os.path.join("docs", "deploy_zoo.json"))
    parser.add_argument("--table", action="store_true", help="only write the README blocks from --out/--phone_out")
    args = parser.parse_args(argv)
    if args.zoo:
        rows = measure(args.zoo, args.work, args.rounds)
        command = (f"python scripts/zoo_table.py --zoo {args.zoo} --work {args.work} --rounds {args.rounds} "
                   f"--out {args.out}")
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump({"command": command, "rows": rows}, fh, indent=1)
    if args.phone:
        summary = json.load(open(args.phone, encoding="utf-8"))
        with open(args.phone_out, "w", encoding="utf-8") as fh:
            json.dump({"command": args.phone_command, "out": os.path.dirname(args.phone), "summary": summary},
                      fh, indent=1)
    write_tables(args.out, args.phone_out, args.readme, args.evaluation_md, args.deploy_zoo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
