"""One PTQ table for the whole zoo from the JSON files ``scripts/ptq_sweep.py`` writes per model.

    python scripts/ptq_zoo_table.py outputs/ptq_sweep_abpn_M4C28_x3.json outputs/ptq_sweep_etds_M4C32_x3.json \
        --out docs/ptq_zoo.md

Rows: model x bit width x method, with each set's PSNR (Y, dB), its change against the float model
and the calibration wall time; the best method of each model and bit width on the first set is in
bold. A missing or unreadable file, or one that is not a sweep's JSON, is one line, exit code 2.
"""
import argparse
import json
import sys

import _bootstrap  # noqa: F401  pylint: disable=unused-import  (the project root on sys.path)
from src.engine.ptq_tables import eval_report_as_sweep, load_sweep, merge_sweeps, sweep_title, zoo_markdown
from src.utils.atomic import atomic_target
from src.utils.readme_block import write_block
from src.errors import UserError, error_line


def main(argv=None):
    parser = argparse.ArgumentParser(description="Join ptq_sweep.py JSON files into one zoo-wide table.")
    parser.add_argument("sweeps", nargs="+", help="ptq_sweep_<model>_<variant>_x<scale>.json files")
    parser.add_argument("--out", default="", help="write the Markdown table here too")
    parser.add_argument("--readme", default="", help="write the table into this file's ptq_zoo block too")
    parser.add_argument("--merge", default="", help="instead: join the given files of ONE model (ptq_sweep JSON or "
                                                    "eval.py reports of single quantized runs) into this sweep JSON")
    args = parser.parse_args(argv)
    if args.merge:
        try:
            merged = merge_sweeps([load_sweep(p) if '"rows"' in open(p, encoding="utf-8").read(200000)
                                   else eval_report_as_sweep(p) for p in args.sweeps])
            with atomic_target(args.merge) as tmp, open(tmp, "w", encoding="utf-8") as fh:
                json.dump(merged, fh, indent=2)
        except (UserError, OSError) as exc:
            print(f"error: {error_line(exc)}", file=sys.stderr)
            return 2
        print(f"wrote {args.merge}: {len(merged['rows'])} rows")
        return 0
    try:
        table = zoo_markdown([(sweep_title(p), load_sweep(p)) for p in args.sweeps])
        if args.out:
            with atomic_target(args.out) as tmp, open(tmp, "w", encoding="utf-8") as fh:
                fh.write(table + "\n")
        if args.readme:
            write_block(args.readme, "ptq_zoo", table.splitlines())
    except (UserError, OSError) as exc:
        print(f"error: {error_line(exc)}", file=sys.stderr)
        return 2
    except UnicodeDecodeError:
        print(f"error: --readme {args.readme} is not UTF-8 text; give the Markdown file holding the ptq_zoo block",
              file=sys.stderr)
        return 2
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
