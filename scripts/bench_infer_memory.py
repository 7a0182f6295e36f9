"""Peak resident memory of infer.py on one large image, against the size of its 8-bit output.

    python scripts/bench_infer_memory.py --image photo_8000.jpg --scale 3 \
        --runs "tflite=--model_file abpn_int8_360x640.tflite" \
        --runs "ckpt=--model abpn --variant M4C28 --scale 3 --pre_trained abpn_x3.ckpt" --json docs/infer_memory.json

Each run is ``infer.py --input_path IMAGE --output_path <tmp> <its options>`` under ``/usr/bin/time -v``
(one after the other: this machine has 2 cores); the JSON records every run's command, peak RSS,
wall time and the output's uint8 size, and the table is printed.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import _bootstrap  # noqa: E402,F401  pylint: disable=unused-import,wrong-import-position  (the project root on sys.path)

from src.utils.readme_block import write_block  # noqa: E402  pylint: disable=wrong-import-position


def measure(image, options):
    """{command, peak_rss_gib, seconds, exit} of infer.py on ``image`` with ``options`` (a list)."""
    with tempfile.TemporaryDirectory() as out:
        cmd = ["/usr/bin/time", "-v", sys.executable, "infer.py", "--input_path", image, "--output_path", out] + options
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", proc.stderr)
    seconds = sum(float(p) * 60 ** i for i, p in enumerate(reversed(wall.group(1).split(":")))) if wall else None
    return {"command": " ".join(cmd[2:]), "peak_rss_gib": round(int(rss.group(1)) / 2 ** 20, 2) if rss else None,
            "seconds": round(seconds, 1) if seconds else None, "exit": proc.returncode}


def block_lines(data):
    """Markdown lines of a measurement JSON (for the README block)."""
    w, h = data["size"]
    lines = [f"Peak resident memory of `infer.py` on a {w}x{h} photo at x{data['scale']} (output "
             f"{w * data['scale']}x{h * data['scale']}: {data['output_uint8_gib']} GiB as 8-bit RGB), written by "
             f"`{data['command']}`:", "", "| run | peak RSS GiB | x the uint8 output | seconds |", "|---|---|---|---|"]
    lines += [f"| {r['label']} | {r['peak_rss_gib']} | {r['peak_over_output']} | {r['seconds']} |" for r in data["rows"]]
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", required=True)
    parser.add_argument("--scale", type=int, required=True)
    parser.add_argument("--runs", action="append", required=True, help="label=infer.py options (repeatable)")
    parser.add_argument("--json", default="")
    parser.add_argument("--readme", default="", help="write the lines into this file's infer_memory block")
    parser.add_argument("--table", default="", help="only write --readme's block from this JSON (no run)")
    args = parser.parse_args(argv)
    if args.table:
        with open(args.table, encoding="utf-8") as fh:
            write_block(args.readme, "infer_memory", block_lines(json.load(fh)))
        return 0
    from PIL import Image  # pylint: disable=import-outside-toplevel
    with Image.open(args.image) as img:
        width, height = img.size
    output_gib = width * height * args.scale ** 2 * 3 / 2 ** 30
    rows = []
    for spec in args.runs:
        label, _, options = spec.partition("=")
        row = dict(label=label, **measure(args.image, options.split()))
        row["peak_over_output"] = round(row["peak_rss_gib"] / output_gib, 2) if row["peak_rss_gib"] else None
        rows.append(row)
        print(f"{label}: peak RSS {row['peak_rss_gib']} GiB = {row['peak_over_output']} x the {output_gib:.2f} GiB "
              f"uint8 output, {row['seconds']} s, exit {row['exit']}", flush=True)
    data = {"image": os.path.basename(args.image), "size": [width, height], "scale": args.scale,
            "output_uint8_gib": round(output_gib, 2), "rows": rows,
            "command": "python scripts/bench_infer_memory.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)
    if args.readme:
        write_block(args.readme, "infer_memory", block_lines(data))
    return 0 if all(r["exit"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
