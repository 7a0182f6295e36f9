"""The bad-input sweep (tests/bad_input_sweep.py): its judges and its .pth writer, and every case of its
catalogue run against this tree as a test of its own (marker ``sweep``: ``pytest -m sweep tests`` runs the
catalogue alone, about 7 minutes with ``-n 2``; see docs/reliability.md)."""
import os

import numpy as np
import pytest

import bad_input_sweep as sweep
from conftest import ROOT


def _proc(rc=2, stderr="", stdout=""):
    return sweep.Proc("cmd", rc, stdout, stderr, 300.0, False, 1.0)


def test_refusal_judge():
    held, _ = sweep.refused(_proc(2, "[WARNING] ME(1:2,MainProcess): noise\nerror: --lr must be finite, not nan\n"),
                            mention_any=("lr",))
    assert held
    argparse_pair = "usage: eval.py [-h] [--config_path CONFIG_PATH]\n    [--a A]\neval.py: error: argument --scale\n"
    assert sweep.refused(_proc(2, argparse_pair))[0]
    progress = "S x2:   0%|          | 0/2 [00:00<?, ?img/s]\rS x2:  50%|#  | 1/2 [00:00<00:00, 3.39img/s]\n"
    assert sweep.refused(_proc(2, progress + "error: bad\n"))[0]
    # failures: exit 0, a traceback, two lines, a signal, exit 1, an unnamed option
    assert not sweep.refused(_proc(0, stdout="wrote x.ckpt"))[0]
    trace = "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: boom\n"
    assert "traceback" in sweep.refused(_proc(1, trace))[1]
    assert not sweep.refused(_proc(2, trace + "error: boom\n"))[0]
    assert not sweep.refused(_proc(2, "error: one\nerror: two\n"))[0]
    assert "SIGSEGV" in sweep.refused(_proc(-11))[1]
    assert not sweep.refused(_proc(1, "error: x\n"))[0]
    assert not sweep.refused(_proc(2, "error: cannot convert float NaN to integer\n"),
                             mention_any=("max_tile_mem_gb",))[0]
    # an option is not "named" by a path that happens to contain it; a file name is
    assert not sweep.refused(_proc(2, "error: bad value in /tmp/lr_dir/x\n"), mention_any=("lr",))[0]
    assert sweep.refused(_proc(2, "error: /data/HR/tiny.png is too small\n"), mention=("tiny.png",))[0]


def test_timeout_is_a_failure():
    p = sweep.Proc("cmd", -9, "", "", 10.0, True, 300.0)
    assert sweep.crashed(p).startswith("timed out") and not sweep.refused(p)[0]


def test_pth_writer_round_trips_through_the_project_reader(tmp_path):
    """The sweep writes torch-format files without torch; the project's reader reads the valid ones back."""
    from src.weights.torch_pickle import load_torch_state_dict
    arrays = sweep.abpn_state(seed=1)
    path = sweep.pth_from_arrays(str(tmp_path / "w.pth"), arrays, prefix="")
    loaded = load_torch_state_dict(path)
    assert list(loaded) == list(arrays)
    for name, value in arrays.items():
        np.testing.assert_array_equal(loaded[name], value)


def test_catalogue_covers_every_sub_item():
    names = [f"{c.kind}/{c.name}" for c in sweep.CASES]
    assert len(names) == len(set(names)) and len(names) >= 100
    # 1-19: issue 13; 20: issue 14's mobile files; 26: the recent features (results of another run, bombs, ...)
    assert {c.item for c in sweep.CASES} == set(range(1, 21)) | {26}
    assert {c.kind for c in sweep.CASES} == set(sweep.KINDS)


@pytest.fixture(scope="session")
def sweep_ctx(tmp_path_factory):
    """The sweep's context for this tree: its own work folder, the shared data when ``SR_SHARED`` points at it
    (cases that need it are skipped otherwise, as in the script), the script's limits per child."""
    shared = os.environ.get("SR_SHARED", "")
    return sweep.Ctx(ROOT, str(tmp_path_factory.mktemp("sweep")),
                     os.path.abspath(shared) if shared and os.path.isdir(shared) else None, timeout=300)


@pytest.mark.sweep
@pytest.mark.slow
@pytest.mark.parametrize("case", sweep.CASES, ids=[f"{c.kind}/{c.name}" for c in sweep.CASES])
def test_bad_input_is_held(sweep_ctx, case):
    """One case of the catalogue: refused cleanly (exit 2, one line naming the problem, nothing overwritten)
    or answered correctly; skipped where the script skips it (no shared data, read-only folders as root)."""
    result = sweep.run_case(sweep_ctx, case)
    if result["status"] == "SKIPPED":
        pytest.skip(result["reason"])
    assert result["status"] == "HELD", result["reason"]


def test_the_reliability_table_is_the_last_full_run(tmp_path):
    """docs/reliability.md's sweep block is what --table writes from docs/bad_input_sweep.json; that run
    tried every case of today's catalogue (a case added without re-running the sweep fails here) and
    every case held."""
    import json
    import re
    import shutil
    now_path = os.path.join(ROOT, "docs", "bad_input_sweep.json")
    before_path = os.path.join(ROOT, "docs", "bad_input_sweep_before.json")
    md = tmp_path / "reliability.md"
    shutil.copy(os.path.join(ROOT, "docs", "reliability.md"), md)
    text = md.read_text(encoding="utf-8")
    md.write_text(re.sub(r"(<!-- sweep:begin -->\n).*?(<!-- sweep:end -->)", r"\1\2", text, flags=re.S),
                  encoding="utf-8")
    cwd = os.getcwd()
    os.chdir(ROOT)  # the command line written into the doc names the reports relative to the project
    try:
        assert sweep.main(["--table", "docs/bad_input_sweep.json", "--before", "docs/bad_input_sweep_before.json",
                           "--md", str(md)]) == 0
    finally:
        os.chdir(cwd)
    written = md.read_text(encoding="utf-8").replace(str(md), "docs/reliability.md")
    assert written == text
    now = json.load(open(now_path, encoding="utf-8"))
    ran = {(c["kind"], c["name"]) for c in now["cases"]}
    assert ran == {(c.kind, c.name) for c in sweep.CASES}
    assert now["held"] == now["tried"] and not [c for c in now["cases"] if c["status"] == "FAILED"]
    before = json.load(open(before_path, encoding="utf-8"))
    assert before["held"] < before["tried"]  # the before run shows what the fixes changed


def test_table_lines_name_each_kind_without_item_numbers():
    now = {"kinds": {"config": {"tried": 3, "held": 3, "skipped": 1}}, "tried": 3, "held": 3,
           "seconds": 60.0, "command": "/v/bin/python tests/bad_input_sweep.py --json x.json"}
    before = {"kinds": {"config": {"tried": 3, "held": 1, "skipped": 0}}, "tried": 3, "held": 1,
              "seconds": 6.0, "command": "/v/bin/python tests/bad_input_sweep.py --only config --json b.json"}
    lines = sweep.reliability_table(now, [before])
    assert lines[2] == "| `config` | config values | 3 | 3 | 1 of 3 |"
    assert "python tests/bad_input_sweep.py --json x.json" in lines[-1] and "/v/bin" not in lines[-1]
    assert "1 skipped" in lines[-1]
