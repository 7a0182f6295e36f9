"""Training runs and their files: run identity on resume, fresh runs over an earlier run, unreadable
states, non-finite weights and checkpoints, reproducible CPU training, skipped steps in the logs,
and the CSV row after a resume."""
import csv
import glob
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn, ops

from conftest import ROOT, write_smooth_images
from model_utils.config import get_config
from src.data import train_set
from src.engine.losses import SRLoss
from src.engine.train_log import TrainLogger
from src.engine.train_state import check_finite, check_identity, list_states, save_state
from src.engine.train_step import DeterministicPReLU, TrainStep, use_deterministic_prelu
from src.engine.trainer import train
from src.models.registry import create_model
from src.weights.checkpoint import CheckpointError

STEM = "abpn_M2C8_x2"
OFF = Tensor(0.0, ms.float32)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("rundata")
    write_smooth_images(root / "train", 4, 40)
    write_smooth_images(root / "data" / "benchmark" / "Val" / "HR", 1, 32, seed=9)
    return root


def _args(data, ckpt_dir, *extra):
    return ["--model", "abpn", "--variant", "M2C8", "--scale", "2", "--train_path", str(data / "train"),
            "--val_data_path", str(data / "data"), "--val_datasets", "Val", "--patch_size", "8",
            "--batch_size", "2", "--cache_dir", str(data / "cache"), "--ckpt_dir", str(ckpt_dir),
            "--lr_scheduler", "multistep", "--lr_milestones", "5", "--log_every", "2", *extra]


def _train(data, ckpt_dir, *extra):
    lines = []
    train(get_config(_args(data, ckpt_dir, *extra)), log=lines.append)
    return lines


def _snapshot(folder):
    return {os.path.basename(p): open(p, "rb").read() for p in glob.glob(os.path.join(str(folder), "*"))
            if os.path.isfile(p)}


def _csv(folder):
    with open(os.path.join(str(folder), f"{STEM}_train_log.csv"), newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# ---- 14: run identity ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def finished_run(data, tmp_path_factory):
    """A 4-step run with states at steps 2 and 4."""
    ckpt = tmp_path_factory.mktemp("finished")
    _train(data, ckpt, "--total_steps", "4", "--val_every", "2", "--save_every", "2")
    return ckpt


@pytest.mark.parametrize("extra,keys", [
    (["--lr", "0.002", "--patch_size", "6"], ["patch_size", "lr"]),
    (["--batch_size", "3"], ["global_batch"]),
    (["--n_colors", "1"], ["n_colors"]),
    (["--lr_milestones", "3"], ["lr_milestones"]),
    (["--ema_decay", "0.9", "--weight_decay", "0.01"], ["weight_decay", "ema_decay"]),
], ids=["lr+patch", "batch", "n_colors", "milestones", "ema+wd"])
def test_resume_refuses_a_state_of_a_different_run_naming_the_keys(data, finished_run, extra, keys):
    before = _snapshot(finished_run)
    with pytest.raises(ValueError) as err:
        _train(data, finished_run, "--total_steps", "6", "--val_every", "2", "--resume", "True", *extra)
    text = str(err.value)
    assert "is from a different run" in text and "\n" not in text
    named = re.findall(r"(?:\(|; )(\w+) \S+ in the state", text)
    assert named == keys, text
    assert _snapshot(finished_run) == before  # nothing written


def test_resume_refuses_other_training_images(data, finished_run, tmp_path):
    ckpt = tmp_path / "ck"
    ckpt.mkdir()
    for name, blob in _snapshot(finished_run).items():
        (ckpt / name).write_bytes(blob)
    moved = tmp_path / "moved"  # the same images in another folder are the same data
    moved.mkdir()
    for name in os.listdir(data / "train"):
        (moved / name).write_bytes((data / "train" / name).read_bytes())
    write_smooth_images(tmp_path / "more", 5, 40)  # one image more is not
    before = _snapshot(ckpt)
    with pytest.raises(ValueError, match=r"train_images \"4 images, \w+\" in the state, \"5 images, \w+\" now"):
        _train(data, ckpt, "--total_steps", "6", "--val_every", "2", "--resume", "True",
               "--train_path", str(tmp_path / "more"))
    assert _snapshot(ckpt) == before
    lines = _train(data, ckpt, "--total_steps", "5", "--val_every", "5", "--resume", "True", "--train_path", str(moved))
    assert lines[0].startswith("resumed at step 4")


def test_resume_accepts_options_that_may_change(data, finished_run, tmp_path):
    ckpt = tmp_path / "ck"
    ckpt.mkdir()
    for name, blob in _snapshot(finished_run).items():
        (ckpt / name).write_bytes(blob)
    lines = _train(data, ckpt, "--total_steps", "6", "--val_every", "3", "--save_every", "1", "--log_every", "1",
                   "--num_workers", "1", "--keep_last_ckpt", "1", "--max_bad_steps", "5", "--resume", "True")
    assert any(l.startswith("resumed at step 4") for l in lines)
    assert [os.path.basename(p) for p in list_states(str(ckpt), STEM)] == [f"{STEM}_state_00000006.ckpt"]


def test_resume_refusal_is_one_line_with_exit_code_2(data, finished_run):
    before = _snapshot(finished_run)
    run = subprocess.run([sys.executable, os.path.join(ROOT, "train.py")]
                         + _args(data, finished_run, "--total_steps", "6", "--resume", "True", "--seed", "5"),
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 2, run.stderr[-2000:]
    errors = [l for l in run.stderr.splitlines() if l.strip() and not l.startswith("[WARNING]")]  # MindSpore's own
    assert len(errors) == 1 and errors[0].startswith("error: --resume True:"), run.stderr[-2000:]
    assert "(seed 0 in the state, 5 now)" in errors[0] and "same --seed" in errors[0]
    assert _snapshot(finished_run) == before


def test_fresh_run_refuses_a_folder_holding_another_run(data, finished_run, tmp_path):
    before = _snapshot(finished_run)
    with pytest.raises(ValueError, match="holds 5 file\\(s\\) of an earlier abpn_M2C8_x2 run .*--overwrite True"):
        _train(data, finished_run, "--total_steps", "2", "--val_every", "2")
    with pytest.raises(ValueError, match="pass only one of them"):
        _train(data, finished_run, "--total_steps", "2", "--resume", "True", "--overwrite", "True")
    assert _snapshot(finished_run) == before  # states, best, last and the CSV history are intact

    # --resume True without any state, but with the best checkpoint and CSV of a run: refused as well
    partial = tmp_path / "partial"
    partial.mkdir()
    for name, blob in before.items():
        if "_state_" not in name:
            (partial / name).write_bytes(blob)
    with pytest.raises(ValueError, match="but no training state to continue from"):
        _train(data, partial, "--total_steps", "2", "--val_every", "2", "--resume", "True")

    # the override: the earlier run's files are replaced, nothing of it is left
    ckpt = tmp_path / "ck"
    ckpt.mkdir()
    for name, blob in before.items():
        (ckpt / name).write_bytes(blob)
    lines = _train(data, ckpt, "--total_steps", "3", "--val_every", "3", "--overwrite", "True")
    assert any("--overwrite True: removed 4 file(s)" in l for l in lines)
    assert [os.path.basename(p) for p in list_states(str(ckpt), STEM)] == [f"{STEM}_state_00000003.ckpt"]
    assert [r["step"] for r in _csv(ckpt)] == ["3"]


def test_resume_with_every_state_unreadable_stops_and_changes_nothing(data, finished_run, tmp_path):
    ckpt = tmp_path / "ck"
    ckpt.mkdir()
    for name, blob in _snapshot(finished_run).items():
        (ckpt / name).write_bytes(blob[:200] if "_state_" in name else blob)
    before = _snapshot(ckpt)
    with pytest.raises(CheckpointError, match="none of the 2 training state\\(s\\).*can be read.*nothing was changed"):
        _train(data, ckpt, "--total_steps", "6", "--val_every", "2", "--resume", "True")
    assert _snapshot(ckpt) == before  # best.ckpt, last.ckpt, the CSV and the log untouched


def test_states_of_older_versions_are_checked_for_seed_and_batch():
    identity = {"seed": 0, "global_batch": 4, "lr": 0.001}
    notes = []
    check_identity({"step": 8, "seed": 0, "global_batch": 4}, identity, "s.ckpt", 4, notes.append)
    assert len(notes) == 1 and "records no run identity" in notes[0]
    with pytest.raises(ValueError, match=r"\(global_batch 4 in the state, 8 now\).*same --batch_size"):
        check_identity({"step": 8, "seed": 0, "global_batch": 4}, identity, "s.ckpt", 8, notes.append)


def test_csv_of_an_older_version_keeps_its_rows_on_resume(tmp_path):
    (tmp_path / "m_train_log.csv").write_text("step,loss,lr,seconds,psnr_Val\n2,0.5,1e-3,1,30.0\n4,0.4,1e-3,2,31.0\n")
    TrainLogger(str(tmp_path), "m", ["Val"], resume_step=2)
    rows = (tmp_path / "m_train_log.csv").read_text().splitlines()
    assert rows == ["step,loss,lr,seconds,skipped,psnr_Val", "2,0.5,1e-3,1,,30.0"]


# ---- 15: non-finite weights and checkpoints --------------------------------------------------

def _batch(rng):
    return Tensor(rng.random((2, 3, 8, 8), np.float32)), Tensor(rng.random((2, 3, 16, 16), np.float32))


def test_train_step_flags_weights_an_update_made_non_finite():
    rng = np.random.default_rng(0)
    net = create_model("abpn", "M2C8", 2)
    # finite loss and gradients; Adam's step lr*sqrt(1-b2)/(1-b1) * m/sqrt(v) overflows float32
    step = TrainStep(SRLoss(net), nn.Adam(net.trainable_params(), 1e38, beta1=0.999))
    step.set_train(True)
    loss, finite = step(*_batch(rng), OFF)
    assert bool(finite.asnumpy()) and np.isfinite(float(loss.asnumpy()))
    assert not step.weights_are_finite() and "conv_first.weight" in step.non_finite_weights()
    assert "weights_finite" not in step.state_values()
    sane = TrainStep(SRLoss(create_model("abpn", "M2C8", 2)), nn.Adam(net.trainable_params(), 1e-3))
    assert sane.weights_are_finite()


def test_run_stops_before_writing_a_checkpoint_with_non_finite_weights(data, tmp_path):
    lines = []
    with pytest.raises(FloatingPointError, match="step 1: the update made .* non-finite .* without writing a "
                                                 "checkpoint"):
        train(get_config(_args(data, tmp_path, "--total_steps", "3", "--val_every", "1", "--save_every", "1",
                                "--lr", "1e38", "--beta1", "0.999")), log=lines.append)
    assert not glob.glob(str(tmp_path / "*.ckpt"))  # no state, last or best with an infinity in it
    assert "stopped: step 1" in (tmp_path / f"{STEM}_train.log").read_text()


def test_no_state_is_written_with_a_non_finite_tensor(tmp_path):
    rng = np.random.default_rng(1)
    net = create_model("abpn", "M2C8", 2)
    step = TrainStep(SRLoss(net), nn.Adam(net.trainable_params(), 1e-3))
    step.set_train(True)
    step(*_batch(rng), OFF)
    path = save_state(step, str(tmp_path), STEM, 1, {"best": -1.0})
    good = open(path, "rb").read()
    moment = [p for p in step.get_parameters() if p.name.startswith("moment2.")][0]
    moment.set_data(Tensor(np.full(moment.shape, np.nan, np.float32)))
    with pytest.raises(FloatingPointError, match=f"refusing to write {STEM}_state_00000001.ckpt: 1 tensor.*"
                                                 f"{moment.name}.*previous file is kept"):
        save_state(step, str(tmp_path), STEM, 1, {"best": -1.0})
    assert open(path, "rb").read() == good
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(path)]  # no temp file left either
    with pytest.raises(FloatingPointError, match="refusing to write x_best.ckpt: 1 tensor"):
        check_finite({"w": np.array([1.0, np.inf], np.float32), "step": np.array([3], np.int32)}, "d/x_best.ckpt")


# ---- 16: reproducible CPU training ----------------------------------------------------------

def _grads(net, batch, calls):
    loss = SRLoss(net)
    grad = ops.GradOperation(get_by_list=True)(loss, ms.ParameterTuple(net.trainable_params()))
    return [[g.asnumpy() for g in grad(*batch)] for _ in range(calls)]


def test_deterministic_prelu_same_values_reproducible_gradient():
    ms.set_seed(3)
    net = create_model("sesr", "M3", 2, form="train", feature_size=16)
    stock = create_model("sesr", "M3", 2, form="train", feature_size=16)
    ms.load_param_into_net(stock, {p.name: ms.Parameter(p.data.copy(), p.name) for p in net.get_parameters()})
    assert use_deterministic_prelu(net) == 3
    assert all(isinstance(c, nn.PReLU) for c in net.acts) and isinstance(net.acts[0], DeterministicPReLU)
    rng = np.random.default_rng(2)
    x = Tensor(rng.random((4, 1, 24, 24), np.float32))
    np.testing.assert_array_equal(net(x).asnumpy(), stock(x).asnumpy())  # forward bit-identical
    batch = (x, Tensor(rng.random((4, 1, 48, 48), np.float32)))
    runs = _grads(net, batch, 8)
    for later in runs[1:]:
        for a, b in zip(runs[0], later):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(runs[0], _grads(stock, batch, 1)[0]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)  # the same gradient, up to summation order


def test_ecbsr_training_gradient_is_reproducible():
    ms.set_seed(4)
    net = create_model("ecbsr", "M4C8", 2, form="train")
    use_deterministic_prelu(net)
    rng = np.random.default_rng(3)
    batch = (Tensor(rng.random((2, 3, 16, 16), np.float32)), Tensor(rng.random((2, 3, 32, 32), np.float32)))
    runs = _grads(net, batch, 4)
    names = [p.name for p in net.trainable_params()]
    for later in runs[1:]:
        for name, a, b in zip(names, runs[0], later):
            np.testing.assert_array_equal(a, b, err_msg=name)  # ops.pad's gradient changed from call 2 on


def _digest(text):
    found = re.findall(r"parameter digest ([0-9a-f]+)", text)
    assert found, text[-2000:]
    return found[-1]


def test_same_seed_gives_identical_weights(data, tmp_path):
    """SESR (PReLU) trained twice, with 2 and 1 data-loading threads, and once resumed half-way:
    bit-identical weights."""
    args = ["--model", "sesr", "--variant", "M3", "--feature_size", "16", "--scale", "2",
            "--train_path", str(data / "train"), "--val_data_path", str(data / "data"), "--val_datasets", "Val",
            "--patch_size", "12", "--batch_size", "4", "--total_steps", "12", "--val_every", "12",
            "--save_every", "6", "--cache_dir", str(data / "cache")]

    def run(*extra):
        done = subprocess.run([sys.executable, os.path.join(ROOT, "train.py")] + args + list(extra),
                              cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout
    first = _digest(run("--num_workers", "2", "--ckpt_dir", str(tmp_path / "a")))
    assert _digest(run("--num_workers", "1", "--ckpt_dir", str(tmp_path / "b"))) == first
    os.remove(list_states(str(tmp_path / "b"), "sesr_M3_x2")[0])  # as if killed after the state of step 6
    resumed = run("--num_workers", "1", "--ckpt_dir", str(tmp_path / "b"), "--resume", "True")
    assert "resumed at step 6" in resumed and _digest(resumed) == first


# ---- 17: logs ---------------------------------------------------------------------------------

def test_skipped_steps_are_logged_as_skipped(data, tmp_path, monkeypatch):
    real_item = train_set.PatchSource.__getitem__
    bad_positions = range(4, 8)  # batch 2: steps 3 and 4

    def item(self, position):
        lr, hr = real_item(self, position)
        return (np.full_like(lr, np.nan), hr) if position in bad_positions else (lr, hr)
    monkeypatch.setattr(train_set.PatchSource, "__getitem__", item)
    lines = _train(data, tmp_path, "--total_steps", "6", "--val_every", "4")
    assert [l.split(" skipped")[0] for l in lines if re.match(r"step \d+/6 skipped", l)] == ["step 3/6", "step 4/6"]
    at2 = [l for l in lines if l.startswith("step 2/6 epoch")][0]
    at4 = [l for l in lines if l.startswith("step 4/6 epoch")][0]
    at6 = [l for l in lines if l.startswith("step 6/6 epoch")][0]
    assert "loss n/a (all 2 steps skipped" in at4  # not the loss of the last good steps
    assert "skipped" not in at6
    rows = _csv(tmp_path)
    assert [(r["step"], r["skipped"]) for r in rows] == [("4", "2"), ("6", "0")]
    mean_1_2 = float(re.search(r"loss ([0-9.]+)", at2).group(1))
    assert abs(float(rows[0]["loss"]) - mean_1_2) < 6e-5  # the row's mean is over the 2 applied steps
    log_text = (tmp_path / f"{STEM}_train.log").read_text()
    assert "step 3/6 skipped" in log_text and "all 2 steps skipped" in log_text


def test_csv_row_after_resume_equals_the_uninterrupted_run(data, tmp_path):
    extra = ("--total_steps", "10", "--val_every", "6", "--save_every", "4", "--log_every", "3")
    _train(data, tmp_path, *extra)
    reference = _csv(tmp_path)
    assert [r["step"] for r in reference] == ["6", "10"]
    for path in list_states(str(tmp_path), STEM)[:2]:  # as if killed after the state of step 4
        os.remove(path)
    lines = _train(data, tmp_path, *extra, "--resume", "True")
    assert lines[0].startswith("resumed at step 4")
    again = _csv(tmp_path)
    for ref, row in zip(reference, again):
        for column in ("step", "loss", "lr", "skipped", "psnr_Val"):
            assert row[column] == ref[column], (column, ref, row)
    assert len(again) == len(reference)


@pytest.mark.parametrize("option", ["--pre_trained", "--init_from"])
def test_training_refuses_to_replace_the_checkpoint_it_starts_from(data, finished_run, tmp_path, option):
    """Fine-tuning from <ckpt_dir>/<stem>_best.ckpt into the same --ckpt_dir (with --overwrite True,
    which would delete it, or not) is refused before anything is written; the folder is unchanged."""
    folder = tmp_path / "ck"
    folder.mkdir()
    for name, content in _snapshot(finished_run).items():
        (folder / name).write_bytes(content)
    before = _snapshot(folder)
    best = str(folder / f"{STEM}_best.ckpt")
    for extra in ([], ["--overwrite", "True"]):
        with pytest.raises(ValueError, match=f"is the same file as {option} "):
            _train(data, folder, "--total_steps", "2", option, best, *extra)
        assert _snapshot(folder) == before


def test_resume_reports_but_accepts_a_changed_initial_weights_file(data, tmp_path):
    """An x4 run initialised from an x2 best.ckpt that keeps improving resumes: the state's weights
    replace the initial ones, so the changed file is only reported."""
    from src.weights.checkpoint import model_meta, save_checkpoint  # pylint: disable=import-outside-toplevel
    init = tmp_path / "init.ckpt"
    net = create_model("abpn", "M2C8", 2)
    save_checkpoint(net, str(init), meta=model_meta(net))
    ckpt = tmp_path / "ck"
    _train(data, ckpt, "--total_steps", "2", "--val_every", "2", "--save_every", "2", "--pre_trained", str(init))
    ms.set_seed(7)
    other = create_model("abpn", "M2C8", 2)
    save_checkpoint(other, str(init), meta=model_meta(other))  # the file changed since the run started
    lines = _train(data, ckpt, "--total_steps", "3", "--val_every", "3", "--resume", "True", "--pre_trained", str(init))
    assert any(l.startswith("notice: --pre_trained / --init_from (the file's content) differs") for l in lines)
    assert any(l.startswith("resumed at step 2") for l in lines)


def test_loss_scale_is_identified_as_given_not_as_resolved(data, tmp_path):
    """'auto' resolves to 'dynamic' with AMP on GPU and 'none' on CPU: the state records 'auto', so
    moving a run between devices does not make it 'a different run'."""
    import json  # pylint: disable=import-outside-toplevel
    lines = _train(data, tmp_path / "ck", "--total_steps", "2", "--val_every", "2", "--save_every", "2")
    assert any("loss scale none" in l for l in lines)  # what 'auto' resolved to here
    raw = ms.load_checkpoint(list_states(str(tmp_path / "ck"), STEM)[0])
    assert json.loads(str(raw["train_progress"]))["run"]["loss_scale"] == "auto"
