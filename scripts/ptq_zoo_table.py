"""One PTQ table for the whole zoo from the JSON files ``scripts/ptq_sweep.py`` writes per model.

    python scripts/ptq_zoo_table.py outputs/ptq_sweep_abpn_M4C28_x3.json outputs/ptq_sweep_etds_M4C32_x3.json \
        --out docs/ptq_zoo.md

Rows: model x bit width x method, with each set's PSNR (Y, dB), its change against the float model
and the calibration wall time; the best method of each model and bit width on the first set is in
bold. A missing or unreadable file, or one that is not a sweep's JSON, is one line, exit code 2.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from src.utils.atomic import atomic_target  # noqa: E402
from src.utils.readme_block import write_block  # noqa: E402
from src.errors import UserError  # noqa: E402


def _title(path):
    """``abpn_M4C28_x3`` from ``.../ptq_sweep_abpn_M4C28_x3.json`` (or a copy named ``ptq_zoo_...``)."""
    name = os.path.splitext(os.path.basename(path))[0]
    for prefix in ("ptq_sweep_", "ptq_zoo_"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def load_sweep(path):
    """``{"fp": {set: psnr}, "rows": [...]}`` of a ptq_sweep JSON; ``ValueError`` naming the file when it is
    not one."""
    try:
        with open(path, encoding="utf-8") as fh:
            sweep = json.load(fh)
        if not isinstance(sweep["fp"], dict) or not all({"method", "bits", "psnr", "seconds"} <= set(r)
                                                        for r in sweep["rows"]):
            raise KeyError("rows")
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror}); give the JSON files ptq_sweep.py wrote") from None
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path} is not a ptq_sweep.py JSON (needs 'fp' and 'rows'); give the files "
                         "ptq_sweep.py wrote") from None
    return sweep


def eval_report_as_sweep(path):
    """An eval.py report of one quantized run (``quant``, ``results``, ``results_fp``) as a one-row sweep;
    ``ValueError`` naming the file when it is not one."""
    try:
        with open(path, encoding="utf-8") as fh:
            report = json.load(fh)
        quant = report["quant"]
        bits = int(quant["w_bit"])
        if int(quant["a_bit"]) != bits:
            raise KeyError("a_bit")
        row = {"method": quant["method"], "bits": bits, "label": f"W{bits}A{bits}",
               "psnr": {k: v["psnr"] for k, v in report["results"].items()},
               "ssim": {k: v["ssim"] for k, v in report["results"].items()},
               "seconds": quant["calibration_seconds"]}
        return {"fp": {k: v["psnr"] for k, v in report["results_fp"].items()}, "rows": [row]}
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror})") from None
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UserError(f"{path} is not an eval.py report of one WbAb quantized run") from None


def merge_sweeps(sweeps):
    """One sweep from several of the same model (``[sweep]``): their float rows must agree (same
    checkpoint and sets), rows are joined, one per (method, bits); ``ValueError`` otherwise."""
    fp = sweeps[0]["fp"]
    rows = {}
    for sweep in sweeps:
        if set(sweep["fp"]) != set(fp) or any(abs(sweep["fp"][k] - fp[k]) > 1e-6 for k in fp):
            raise UserError("the files' float PSNRs differ: they are not runs of one checkpoint on the same sets")
        for r in sweep["rows"]:
            if (r["method"], r["bits"]) in rows:
                raise UserError(f"{r['method']} W{r['bits']}A{r['bits']} is in two of the files")
            rows[(r["method"], r["bits"])] = r
    order = ["minmax", "percentile", "omse", "dbdc", "dbdc_pac", "dbdc_recon"]
    joined = sorted(rows.values(), key=lambda r: (-r["bits"], order.index(r["method"]) if r["method"] in order
                                                  else len(order)))
    return {"fp": fp, "rows": joined}


def zoo_markdown(sweeps):
    """The Markdown table of ``[(title, sweep)]`` (see the module notes); sets are the first sweep's."""
    sets = list(sweeps[0][1]["fp"])
    head = ("| model | bits | method | " + " | ".join(f"{s} PSNR (dB vs FP)" for s in sets)
            + " | calibration (s) |")
    lines = [head, "|" + "---|" * (4 + len(sets))]
    for title, sweep in sweeps:
        fp = sweep["fp"]
        lines.append(f"| {title} | FP32 | | " + " | ".join(f"{fp[s]:.2f}" for s in sets) + " | |")
        for bits in sorted({r["bits"] for r in sweep["rows"]}, reverse=True):
            rows = [r for r in sweep["rows"] if r["bits"] == bits]
            best = max(r["psnr"][sets[0]] for r in rows)
            for r in rows:
                cells = []
                for s in sets:
                    text = f"{r['psnr'][s]:.2f} ({r['psnr'][s] - fp[s]:+.2f})"
                    cells.append(f"**{text}**" if s == sets[0] and r["psnr"][s] == best else text)
                lines.append(f"| {title} | W{bits}A{bits} | {r['method']} | " + " | ".join(cells)
                             + f" | {r['seconds']:.1f} |")
    return "\n".join(lines)


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
        except (ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"wrote {args.merge}: {len(merged['rows'])} rows")
        return 0
    try:
        table = zoo_markdown([(_title(p), load_sweep(p)) for p in args.sweeps])
        if args.out:
            with atomic_target(args.out) as tmp, open(tmp, "w", encoding="utf-8") as fh:
                fh.write(table + "\n")
        if args.readme:
            write_block(args.readme, "ptq_zoo", table.splitlines())
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
