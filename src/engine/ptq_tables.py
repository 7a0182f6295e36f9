"""The zoo-wide PTQ table: the JSON files ``scripts/ptq_sweep.py`` writes per model (and single eval.py reports
of one quantized run) read, merged per model and written as one Markdown table (``scripts/ptq_zoo_table.py``).
Rows: model x bit width x method, each set's PSNR-Y (dB) with its change against the float model and the
calibration wall time; the best method of each model and bit width on the first set in bold."""
import json
import os

from src.errors import UserError


def sweep_title(path):
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
