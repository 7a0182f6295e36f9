"""The bad-input sweep (scripts/bad_input_sweep.py): its judges, its .pth writer, and a few of its
cases run against this tree (the full sweep takes 10-20 minutes; see docs/reliability.md)."""
import importlib.util
import os
import sys

import numpy as np
import pytest

from conftest import ROOT

_SPEC = importlib.util.spec_from_file_location("bad_input_sweep", os.path.join(ROOT, "scripts", "bad_input_sweep.py"))
sweep = importlib.util.module_from_spec(_SPEC)
sys.modules["bad_input_sweep"] = sweep
_SPEC.loader.exec_module(sweep)


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


@pytest.mark.parametrize("name", ["pickle_calls_os_system", "pickle_builtins_eval", "not_a_zip"])
def test_cases_that_hold_today_still_hold(tmp_path, name):
    """Code execution through a .pth stays blocked, a non-zip .pth gets one line (about 4 s each)."""
    ctx = sweep.Ctx(ROOT, str(tmp_path), timeout=120)
    (chosen,) = [c for c in sweep.CASES if c.name == name]
    result = sweep.run_case(ctx, chosen)
    assert result["status"] == "HELD", result


# One quick case of every kind the issue-13 fixes made hold (the whole sweep: scripts/bad_input_sweep.py),
# plus the three that held last: lr above float32's range, MindSpore's CRITICAL line on a full disk.
FIXED = [("weights_pth", "huge_shape_tiny_storage"), ("ckpt_meta", "act_unknown"),
         ("temp_symlink", "convert_ckpt_planted_symlink"), ("same_file", "convert_dst_symlink_to_src"),
         ("lr_hr_pairs", "train_div2k_x2_lr_under_X3"), ("image_decode", "infer_truncated_jpeg_input"),
         ("infer_outputs", "output_name_is_another_input"), ("ssim_small", "shave_larger_than_image"),
         ("n_colors", "infer_abpn_n_colors_1"), ("run_identity", "skipped_step_logged_as_skipped"),
         ("non_finite", "ema_decay_1"), ("non_finite", "lr_above_float32"), ("config", "yaml_syntax_error"),
         ("output_paths", "convert_full_disk"), ("output_paths", "train_full_disk"),
         ("device_misc", "infer_corrupt_mindir"), ("mobile_files", "eval_pre_trained_is_a_folder_named_tflite"),
         ("recent", "ptq_sweep_empty_methods")]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    return sweep.Ctx(ROOT, str(tmp_path_factory.mktemp("sweep")), timeout=300)


@pytest.mark.parametrize("kind,name", FIXED, ids=[f"{k}/{n}" for k, n in FIXED])
def test_fixed_cases_hold(ctx, kind, name):
    (chosen,) = [c for c in sweep.CASES if c.kind == kind and c.name == name]
    result = sweep.run_case(ctx, chosen)
    assert result["status"] == "HELD", result


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
           "seconds": 60.0, "command": "/v/bin/python scripts/bad_input_sweep.py --json x.json"}
    before = {"kinds": {"config": {"tried": 3, "held": 1, "skipped": 0}}, "tried": 3, "held": 1,
              "seconds": 6.0, "command": "/v/bin/python scripts/bad_input_sweep.py --only config --json b.json"}
    lines = sweep.reliability_table(now, [before])
    assert lines[2] == "| `config` | config values | 3 | 3 | 1 of 3 |"
    assert "python scripts/bad_input_sweep.py --json x.json" in lines[-1] and "/v/bin" not in lines[-1]
    assert "1 skipped" in lines[-1]
