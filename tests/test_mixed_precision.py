"""Mixed precision under a size / BOPs budget (src/engine/mixed_precision.py, scripts/mixed_precision.py):
the greedy bit-table selection on synthetic sensitivities, then the CLI on a tiny model."""
import json
import numpy as np
import pytest

from conftest import write_quant_run
from src.engine.mixed_precision import (budget_cost, drop_gains, greedy_lifts, layer_cost, lift_gains,
                                        parse_options, select_bit_table, table_cost)

LOW, HIGH = (4, 4), (8, 8)


def _synthetic(seed, count=7):
    """``({name: (weights, macs)}, {name: gain dB})`` for ``count`` layers of random sizes and gains."""
    rng = np.random.default_rng(seed)
    layers = {f"l{i}": (int(rng.integers(50, 8000)), int(rng.integers(10 ** 4, 10 ** 8))) for i in range(count)}
    gains = {n: float(rng.exponential(0.3)) for n in layers}
    return layers, gains


def _costs(layers, metric):
    return (table_cost(layers, {n: LOW for n in layers}, metric), table_cost(layers, {n: HIGH for n in layers}, metric))


def test_layer_cost_units():
    assert layer_cost(100, 5000, (4, 4), "size") == 400  # weight bits
    assert layer_cost(100, 5000, (8, 4), "bops") == 5000 * 32  # MACs x w x a
    assert layer_cost(100, 5000, None, "size") == 3200 and layer_cost(100, 5000, (0, 0), "bops") == 5000 * 1024
    assert table_cost({"a": (10, 20), "b": (1, 2)}, {"a": (4, 4)}, "size") == 40 + 32  # b float


@pytest.mark.parametrize("metric", ["size", "bops"])
@pytest.mark.parametrize("seed", range(6))
def test_budget_never_exceeded_and_gain_monotone(metric, seed):
    layers, gains = _synthetic(seed)
    lo, hi = _costs(layers, metric)
    previous_gain, previous_budget = -1.0, -1.0
    for budget in np.linspace(lo, hi, 41):
        table, lifted = select_bit_table(layers, gains, LOW, HIGH, metric, budget)
        assert table_cost(layers, table, metric) <= budget
        assert set(lifted) == {n for n, b in table.items() if b == HIGH}
        assert all(b in (LOW, HIGH) for b in table.values())
        gain = sum(gains[n] for n in lifted)
        assert gain >= previous_gain - 1e-12 and budget > previous_budget
        previous_gain, previous_budget = gain, budget


@pytest.mark.parametrize("metric", ["size", "bops"])
def test_exact_at_the_extremes(metric):
    for seed in range(4):
        layers, gains = _synthetic(seed)
        gains["l3"] = -0.2  # a measured loss from more bits (noise) is still lifted at the all-high budget
        lo, hi = _costs(layers, metric)
        assert select_bit_table(layers, gains, LOW, HIGH, metric, lo) == ({n: LOW for n in layers}, [])
        table, lifted = select_bit_table(layers, gains, LOW, HIGH, metric, hi)
        assert table == {n: HIGH for n in layers} and lifted[-1] == "l3"
        table, _ = select_bit_table(layers, gains, LOW, HIGH, metric, hi - 1)
        assert table != {n: HIGH for n in layers}


def test_greedy_lifts_best_gain_per_cost_first_and_skips_what_no_longer_fits():
    gains = {"a": 1.0, "b": 3.0, "c": 1.0, "d": 0.0}
    extra = {"a": 10, "b": 10, "c": 2, "d": 1}
    # ratios: c 0.5, b 0.3, a 0.1, d 0 -> c, b fit in 12, a does not, d (free of gain) still fits in 13
    assert greedy_lifts(gains, extra, 12) == ["c", "b"]
    assert greedy_lifts(gains, extra, 13) == ["c", "b", "d"]
    assert greedy_lifts(gains, extra, 0) == []
    assert greedy_lifts(gains, extra, 9) == ["c", "d"]  # b no longer fits after c; d does
    assert greedy_lifts({"a": 0.1, "b": 1.0}, {"a": 0, "b": 5}, 0) == ["a"]  # no extra cost: lifted first


def test_sensitivity_measures_from_psnr_callables():
    names = ["x", "y", "z"]
    table_psnr = {"x": 30.5, "y": 30.0, "z": 31.2}

    def psnr_of(table):
        lifted = [n for n, b in table.items() if b == HIGH]
        return 30.0 if not lifted else table_psnr[lifted[0]]
    gains, base = lift_gains(names, LOW, HIGH, psnr_of)
    assert base == 30.0 and gains == pytest.approx({"x": 0.5, "y": 0.0, "z": 1.2})
    isolated = {("x", "high"): 33.4, ("x", "low"): 32.0, ("y", "high"): 33.5, ("y", "low"): 33.4,
                ("z", "high"): 33.5, ("z", "low"): 31.0}
    assert drop_gains(names, lambda n, w: isolated[(n, w)]) == pytest.approx({"x": 1.4, "y": 0.1, "z": 2.5})


def test_budget_kinds():
    assert budget_cost("gap", 0.25, 400, 800, "size") == 500
    assert budget_cost("gap", 1.0, 400, 800, "size") == 800
    assert budget_cost("high", 0.75, 400, 800, "size") == 600
    assert budget_cost("absolute", 0.0625, 400, 800, "size") == 512  # KiB -> bits
    assert budget_cost("absolute", 2, 10, 5e9, "bops") == 2e9
    with pytest.raises(ValueError, match=r"below the all-low cost 0.04883 KiB; give at least that"):
        budget_cost("high", 0.25, 400, 800, "size")


@pytest.mark.parametrize("raw,expected", [
    ({"budgets": "0,1.5"}, "with --budget_kind gap each budget is a fraction 0..1"),
    ({"budgets": "0,x"}, "--budgets '0,x': give one or more comma-separated numbers"),
    ({"budgets": "0,nan"}, "--budgets '0,nan': give one or more"),
    ({"budget_kind": "high", "budgets": "0"}, "with --budget_kind high each budget must be > 0"),
    ({"budget_kind": "kib"}, "--budget_kind 'kib' is not one of gap, high, absolute"),
    ({"budget_metric": "latency"}, "--budget_metric 'latency' is not one of size, bops"),
    ({"high_bits": "8"}, "--high_bits '8': give 2 comma-separated integers"),
    ({"high_bits": "8,9"}, "--high_bits 8,9: give W,A bit widths between 2 and 8"),
    ({"sensitivity": "hessian"}, "--sensitivity 'hessian' is not one of lift, drop"),
    ({"input_size": "0,5"}, "--input_size 0,5: give the LR H,W"),
])
def test_bad_options_name_the_flag(raw, expected):
    with pytest.raises(ValueError) as info:
        parse_options(raw)
    assert expected in str(info.value)


def test_options_parse():
    opts = parse_options({"budgets": "0,0.5,1", "budget_metric": "bops", "high_bits": "6,8",
                          "sensitivity_datasets": "A,B", "input_size": "8,16"})
    assert opts.budgets == (0.0, 0.5, 1.0) and opts.metric == "bops" and opts.high == (6, 8)
    assert opts.sensitivity_datasets == ("A", "B") and opts.input_hw == (8, 16) and opts.sensitivity == "lift"


# --- the CLI on a tiny model -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cli_setup(tmp_path_factory):
    from test_quant_sensitivity import _etds
    root = tmp_path_factory.mktemp("mixed")
    return root, write_quant_run(root, _etds())


def _args(root, ckpt, *extra):
    from test_quant_sensitivity import _args as sensitivity_args
    return sensitivity_args(root, ckpt, "--w_bit", "4", "--a_bit", "4", "--input_size", "8,8", *extra)


def _run(*args):
    from test_quant_sensitivity import _run as run_script
    return run_script(("scripts", "mixed_precision.py"), *args)


@pytest.mark.parametrize("metric", ["size", "bops"])
def test_cli_writes_tables_within_budget(cli_setup, tmp_path, metric):
    root, ckpt = cli_setup
    proc = _run(*_args(root, ckpt, "--output_path", str(tmp_path), "--quant_method", "dbdc",
                       "--budgets", "0,0.3,1", "--budget_metric", metric))
    assert proc.returncode == 0, proc.stderr
    stem = tmp_path / f"mixed_precision_etds_M2C8_x3_w4a4-w8a8_dbdc_{metric}"
    report = json.loads(stem.with_suffix(".json").read_text())
    assert stem.with_suffix(".png").stat().st_size > 0
    table = stem.with_suffix(".md").read_text()
    layers = report["layers"]
    assert len(layers) == 5 and not report["float_layers"]  # conv_first, 2 backbone convs, conv_last, conv_clip
    rows = [r for r in report["rows"] if r["budget_cost"] is not None]
    assert [r["budget"] for r in rows] == ["gap 0", "gap 0.3", "gap 1"]
    unit = 8 * 1024 if metric == "size" else 1e9
    key = "size_kib" if metric == "size" else "gbops"
    for r in rows:
        assert r[key] * unit <= r["budget_cost"] * (1 + 1e-12)
        assert f"| {r['budget']} | {r['size_kib']:.2f} |" in table
    assert all(b == [4, 4] for b in rows[0]["table"].values()) and rows[0]["lifted"] == []
    assert all(b == [8, 8] for b in rows[-1]["table"].values()) and len(rows[-1]["lifted"]) == 5
    assert report["rows"][-1]["budget"] == "eval.py default scopes"  # first/last W8A8, the rest W4A4
    names = list(layers)
    assert report["rows"][-1]["table"] == {n: [8, 8] if n in (names[0], names[-1]) else [4, 4] for n in names}
    assert set(report["sensitivity"]["gain_db"]) == set(names)


@pytest.mark.parametrize("extra,expected", [
    (["--budgets", "0,2"], "with --budget_kind gap each budget is a fraction 0..1"),
    (["--budget_kind", "absolute", "--budgets", "0.001"], "below the all-low cost"),
    (["--budgets"], "--budgets needs a value"),
    (["--high_bits", "4,4"], "--high_bits 4,4 must be above --w_bit/--a_bit 4/4"),
])
def test_bad_budget_is_one_line_and_exit_2(cli_setup, tmp_path, extra, expected):
    root, ckpt = cli_setup
    proc = _run(*_args(root, ckpt, "--output_path", str(tmp_path), "--quant_method", "dbdc", *extra))
    assert proc.returncode == 2
    lines = [l for l in proc.stderr.splitlines() if l.strip() and "WARNING" not in l and not l.startswith(" ")]
    assert len(lines) == 1 and expected in lines[0], proc.stderr
