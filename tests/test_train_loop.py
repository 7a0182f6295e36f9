"""Training loop: schedules, AMP fallback, loss scaling, clipping, resume after kill -9,
msrun data parallel, logs and presets."""
import glob
import os
import re
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn

from conftest import ROOT, write_smooth_images
from model_utils.config import get_config, load_yaml
from src.engine.losses import SRLoss
from src.engine.schedules import cosine_lr, lr_schedule, multistep_lr
from src.engine.sections import training_sections
from src.engine.train_step import TrainStep
from src.engine.trainer import mixed_precision
from src.models.registry import create_model
from src.weights.checkpoint import read_checkpoint

RNG = np.random.default_rng(0)
OFF = Tensor(0.0, ms.float32)


def _batch(bad=False):
    lr = RNG.random((2, 3, 8, 8)).astype(np.float32)
    if bad:
        lr[0, 0, 0, 0] = np.nan
    return Tensor(lr), Tensor(RNG.random((2, 3, 16, 16)).astype(np.float32))


def _params(net):
    return {p.name: p.data.asnumpy().copy() for p in net.trainable_params()}


# ---- schedules -------------------------------------------------------------------------

def test_schedules():
    lrs = multistep_lr(1.0, [3, 5], 0.5, 7, warmup_steps=2)
    assert lrs == [0.5, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    cos = cosine_lr(1.0, 0.1, 11)
    assert cos[0] == 1.0 and abs(cos[-1] - 0.1) < 0.03 and all(a >= b for a, b in zip(cos, cos[1:]))
    cfg = get_config(["--lr_scheduler", "multistep", "--lr_milestones", "2", "--lr_gamma", "0.1",
                      "--total_steps", "4", "--lr", "1.0"])
    assert np.allclose(lr_schedule(training_sections(cfg).schedule), [1.0, 1.0, 0.1, 0.1])
    with pytest.raises(ValueError, match="warmup_steps"):
        lr_schedule(training_sections(cfg.replace(warmup_steps=4)).schedule)


# ---- mixed precision, loss scaling, clipping, AMSGrad ------------------------------------

def test_amp_falls_back_to_float32_on_cpu_with_a_notice():
    lines = []
    net = create_model("abpn", "M2C8", 2)
    cfg = get_config(["--amp_level", "O2"])
    assert mixed_precision(net, training_sections(cfg).optim, cfg.device_target, lines.append) == "none"
    assert len(lines) == 1 and "not available on CPU" in lines[0] and "O0" in lines[0]
    static = get_config(["--loss_scale", "static"])
    assert mixed_precision(net, training_sections(static).optim, static.device_target, lines.append) == "static"
    with pytest.raises(SystemExit):
        get_config(["--amp_level", "O5"])


def _trained(loss_scale, steps=3, **kwargs):
    ms.set_seed(0)
    net = create_model("abpn", "M2C8", 2)
    step = TrainStep(SRLoss(net), nn.Adam(net.trainable_params(), 1e-2), loss_scale=loss_scale, **kwargs)
    step.set_train(True)
    rng = np.random.default_rng(5)
    for _ in range(steps):
        step(Tensor(rng.random((2, 3, 8, 8), np.float32)), Tensor(rng.random((2, 3, 16, 16), np.float32)), OFF)
    return net, step


def test_static_loss_scale_gives_the_unscaled_update():
    plain, _ = _trained("none")
    scaled, step = _trained("static", loss_scale_value=1024.0)
    assert float(step.loss_scale.asnumpy()) == 1024.0
    for name, value in _params(plain).items():
        np.testing.assert_allclose(_params(scaled)[name], value, rtol=1e-4, atol=1e-6)


def test_dynamic_loss_scale_halves_on_overflow_and_grows_after_a_window():
    net = create_model("abpn", "M2C8", 2)
    step = TrainStep(SRLoss(net), nn.Adam(net.trainable_params(), 1e-2), loss_scale="dynamic",
                     loss_scale_value=256.0, scale_window=2)
    step.set_train(True)
    _, finite = step(*_batch(bad=True), OFF)
    assert not bool(finite.asnumpy()) and float(step.loss_scale.asnumpy()) == 128.0
    step(*_batch(), OFF)
    step(*_batch(), OFF)
    assert float(step.loss_scale.asnumpy()) == 256.0


def test_gradient_clipping_bounds_the_update():
    net = create_model("abpn", "M2C8", 2)
    before = _params(net)
    step = TrainStep(SRLoss(net), nn.SGD(net.trainable_params(), learning_rate=1.0), clip_norm=1e-3)
    step.set_train(True)
    step(*_batch(), OFF)
    moved = np.sqrt(sum(((v - before[k]) ** 2).sum() for k, v in _params(net).items()))
    assert 0 < moved <= 1e-3 * 1.001
    free = create_model("abpn", "M2C8", 2)
    before = _params(free)
    TrainStep(SRLoss(free), nn.SGD(free.trainable_params(), learning_rate=1.0))(*_batch(), OFF)
    assert np.sqrt(sum(((v - before[k]) ** 2).sum() for k, v in _params(free).items())) > 1e-2


def test_amsgrad_keeps_its_max_second_moment():
    net = create_model("abpn", "M2C8", 2)
    step = TrainStep(SRLoss(net), nn.Adam(net.trainable_params(), 1e-2, use_amsgrad=True))
    step.set_train(True)
    for _ in range(3):
        step(*_batch(), OFF)
    state = step.state_values()
    vhat = {k[len("vhat."):]: v for k, v in state.items() if k.startswith("vhat.")}
    assert vhat and set(vhat) == {p.name for p in net.trainable_params()}
    for name, value in vhat.items():
        assert (value >= state["moment2." + name] - 1e-12).all() and value.max() > 0


# ---- whole runs (subprocesses) -----------------------------------------------------------

def _data(tmp_path):
    write_smooth_images(tmp_path / "train", 6, 48)
    write_smooth_images(tmp_path / "data" / "benchmark" / "Val" / "HR", 1, 48, seed=9)
    return ["--model", "abpn", "--variant", "M2C8", "--scale", "2", "--train_path", str(tmp_path / "train"),
            "--val_data_path", str(tmp_path / "data"), "--val_datasets", "Val", "--patch_size", "8",
            "--batch_size", "2", "--cache_dir", str(tmp_path / "cache"), "--log_every", "5"]


def _env():
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def _train(args, **kwargs):
    return subprocess.run([sys.executable, os.path.join(ROOT, "train.py")] + args, cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=600, **kwargs)


def _digest(text):
    found = re.findall(r"parameter digest ([0-9a-f]+)", text)
    assert found, text[-2000:]
    return found[-1]


def test_resume_after_kill_9_continues_exactly(tmp_path):
    args = _data(tmp_path) + ["--total_steps", "60", "--val_every", "20", "--save_every", "5",
                              "--keep_last_ckpt", "2", "--lr_scheduler", "multistep", "--lr_milestones", "30"]
    reference = _train(args + ["--ckpt_dir", str(tmp_path / "ref")])
    assert reference.returncode == 0, reference.stderr[-2000:]

    out_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py")] + args + ["--ckpt_dir", str(out_dir)],
                            cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not glob.glob(str(out_dir / "*_state_000000[2-9]*.ckpt")):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # somewhere between two state files (possibly mid-write)
    proc.wait()
    states = sorted(glob.glob(str(out_dir / "*_state_*.ckpt")))
    # the newest keep_last_ckpt are kept; a kill between writing a state and pruning the oldest leaves one more
    assert 1 <= len(states) <= 3, states
    killed_at = int(re.search(r"_state_(\d+)", states[-1]).group(1))
    assert killed_at < 60

    resumed = _train(args + ["--ckpt_dir", str(out_dir), "--resume", "True"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed at step {killed_at}" in resumed.stdout
    assert len(glob.glob(str(out_dir / "*_state_*.ckpt"))) <= 2  # the next save prunes to keep_last_ckpt
    assert _digest(resumed.stdout) == _digest(reference.stdout)  # same weights as the uninterrupted run
    ref_best, _ = read_checkpoint(str(tmp_path / "ref" / "abpn_M2C8_x2_last.ckpt"))
    run_best, _ = read_checkpoint(str(out_dir / "abpn_M2C8_x2_last.ckpt"))
    for name, value in ref_best.items():
        np.testing.assert_array_equal(run_best[name], value)
    rows = (out_dir / "abpn_M2C8_x2_train_log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["20", "40", "60"]


def test_ctrl_c_writes_a_state_and_resume_continues_exactly(tmp_path):
    """SIGINT (MindSpore answers it with SIGTERM to the process; both reach the trainer) finishes the step,
    writes a resumable state, exits 128+signal with a line saying how to continue; the resumed run ends
    with the weights of an uninterrupted one. No state would exist otherwise (--save_every beyond the run)."""
    args = _data(tmp_path) + ["--total_steps", "400", "--val_every", "100", "--save_every", "1000",
                              "--save_every_minutes", "0", "--log_every", "5"]
    reference = _train(args + ["--ckpt_dir", str(tmp_path / "ref")])
    assert reference.returncode == 0, reference.stderr[-2000:]
    out_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py")] + args + ["--ckpt_dir", str(out_dir)],
                            cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("step 5/"):
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=300)
    assert proc.returncode in (128 + signal.SIGINT, 128 + signal.SIGTERM), err[-2000:]
    assert "continue with the same command plus --resume True" in err and "Traceback" not in err
    states = glob.glob(str(out_dir / "*_state_*.ckpt"))
    assert len(states) == 1, states
    stopped_at = int(re.search(r"_state_(\d+)", states[0]).group(1))
    assert 5 <= stopped_at < 400 and f"at step {stopped_at}/400" in err
    resumed = _train(args + ["--ckpt_dir", str(out_dir), "--resume", "True"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed at step {stopped_at}" in resumed.stdout
    assert _digest(resumed.stdout) == _digest(reference.stdout)


def test_a_state_is_written_on_a_time_interval(tmp_path):
    """--save_every_minutes writes states between the step-based ones (here: after every step)."""
    args = _data(tmp_path) + ["--total_steps", "6", "--val_every", "6", "--save_every", "1000",
                              "--save_every_minutes", "1e-9", "--keep_last_ckpt", "10"]
    run = _train(args + ["--ckpt_dir", str(tmp_path / "ck")])
    assert run.returncode == 0, run.stderr[-2000:]
    steps = sorted(int(re.search(r"_state_(\d+)", p).group(1)) for p in glob.glob(str(tmp_path / "ck" / "*_state_*")))
    assert steps == [1, 2, 3, 4, 5, 6]
    assert "resumable state abpn_M2C8_x2_state_<step>.ckpt every 1000 steps and every 1e-09 min" in run.stdout
    assert f"writing to {tmp_path / 'ck'}" in run.stdout and "abpn_M2C8_x2_train_log.csv" in run.stdout


def test_resume_skips_a_damaged_newest_state(tmp_path):
    args = _data(tmp_path) + ["--total_steps", "10", "--val_every", "10", "--save_every", "5"]
    first = _train(args + ["--ckpt_dir", str(tmp_path / "ck")])
    assert first.returncode == 0, first.stderr[-2000:]
    newest = sorted(glob.glob(str(tmp_path / "ck" / "*_state_*.ckpt")))[-1]
    with open(newest, "r+b") as fh:
        fh.truncate(os.path.getsize(newest) // 2)
    again = _train(args + ["--ckpt_dir", str(tmp_path / "ck"), "--resume", "True", "--total_steps", "10"])
    assert again.returncode == 0, again.stderr[-2000:]
    assert "skipping unreadable training state" in again.stdout and "resumed at step 5" in again.stdout
    mismatch = _train(args + ["--ckpt_dir", str(tmp_path / "ck"), "--resume", "True", "--seed", "7",
                              "--total_steps", "20"])
    assert mismatch.returncode == 2 and "same --seed" in mismatch.stderr


def test_msrun_two_workers_hold_identical_parameters(tmp_path):
    args = _data(tmp_path) + ["--total_steps", "6", "--val_every", "6", "--num_workers", "1"]
    log_dir = tmp_path / "logs"
    env = dict(_env(), PYTHON=sys.executable, LOG_DIR=str(log_dir), MASTER_PORT=str(8200 + os.getpid() % 500))
    run = subprocess.run(["bash", os.path.join(ROOT, "scripts", "run_distribute_train.sh"), "2"] + args
                         + ["--ckpt_dir", str(tmp_path / "dp")], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    logs = {p: open(p, encoding="utf-8", errors="replace").read() for p in glob.glob(str(log_dir / "worker_*.log"))}
    assert run.returncode == 0, run.stdout[-1500:] + "".join(v[-1500:] for v in logs.values())
    digests = {re.search(r"rank (\d)/2 finished", t).group(1): _digest(t) for t in logs.values()}
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"]
    # the 2-worker run (batch 2 each) equals one worker with batch 4: same samples, averaged gradients
    single = _train(_data(tmp_path) + ["--total_steps", "6", "--val_every", "6", "--batch_size", "4",
                                       "--ckpt_dir", str(tmp_path / "one")])
    assert single.returncode == 0, single.stderr[-2000:]
    dp, _ = read_checkpoint(str(tmp_path / "dp" / "abpn_M2C8_x2_last.ckpt"))
    one, _ = read_checkpoint(str(tmp_path / "one" / "abpn_M2C8_x2_last.ckpt"))
    for name, value in one.items():
        np.testing.assert_allclose(dp[name], value, rtol=1e-4, atol=1e-5)


def test_run_train_sh_keeps_the_callers_relative_paths_and_writes_its_console_log(tmp_path):
    _data(tmp_path)  # writes tmp_path/train and tmp_path/data
    args = ["--model", "abpn", "--variant", "M2C8", "--scale", "2", "--train_path", "train", "--val_data_path", "data",
            "--val_datasets", "Val", "--patch_size", "8", "--batch_size", "2", "--cache_dir", "cache",
            "--total_steps", "2", "--val_every", "2", "--ckpt_dir", "ck"]
    run = subprocess.run(["bash", os.path.join(ROOT, "scripts", "run_train.sh")] + args, cwd=tmp_path,
                         env=dict(_env(), PYTHON=sys.executable), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:]
    assert (tmp_path / "ck" / "abpn_M2C8_x2_last.ckpt").is_file()
    console = (tmp_path / "train_console.log").read_text()
    assert "parameter digest" in console and f"writing to {os.path.join('ck')}" in console
    assert "is deprecated" not in console  # MindSpore's warnings about its own internals are not the user's
    bad = subprocess.run(["bash", os.path.join(ROOT, "scripts", "run_train.sh")] + args + ["--lr", "-1"],
                         cwd=tmp_path, env=dict(_env(), PYTHON=sys.executable), capture_output=True, text=True,
                         timeout=600)
    assert bad.returncode == 2 and "--lr" in bad.stdout  # train.py's exit code and its line, through tee


def _event_scalars(folder):
    from tensorboardX.proto import event_pb2  # pylint: disable=import-outside-toplevel
    tags = {}
    for path in glob.glob(os.path.join(folder, "events.out.tfevents.*")):
        data = open(path, "rb").read()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append((event.step, value.simple_value))
    return tags


def test_progress_log_and_tensorboard(tmp_path):
    run = _train(_data(tmp_path) + ["--total_steps", "10", "--val_every", "10", "--tensorboard", "True",
                                    "--amp_level", "O1", "--ckpt_dir", str(tmp_path / "ck")])
    assert run.returncode == 0, run.stderr[-2000:]
    assert "notice: amp_level O1 is not available on CPU" in run.stdout
    line = [l for l in run.stdout.splitlines() if l.startswith("step 5/10")][0]
    for part in ("loss", "lr", "it/s", "ETA"):
        assert part in line
    assert "validation Val" in (tmp_path / "ck" / "abpn_M2C8_x2_train.log").read_text()
    tags = _event_scalars(str(tmp_path / "ck" / "tensorboard"))
    assert [s for s, _ in tags["train/loss"]] == [5, 10] and tags["val/psnr_Val"][0][0] == 10
    assert 10 < tags["val/psnr_Val"][0][1] < 60


def test_bad_training_inputs_exit_with_one_line(tmp_path):
    args = _data(tmp_path) + ["--total_steps", "4", "--val_every", "4", "--ckpt_dir", str(tmp_path / "ck")]
    missing = _train(args + ["--train_path", str(tmp_path / "nope")])
    assert missing.returncode == 2 and "training folder not found" in missing.stderr
    small = _train(args + ["--patch_size", "40"])
    assert small.returncode == 2 and "smaller than a 80px HR patch" in small.stderr
    assert len(small.stderr.strip().splitlines()) == 1


# ---- presets -----------------------------------------------------------------------------

def test_presets_load_on_top_of_the_base(tmp_path):
    for path in glob.glob(os.path.join(ROOT, "configs", "*.yaml")):
        cfg = get_config(["--config_path", path])
        assert cfg.model in ("abpn", "etds", "edsr", "sesr") and cfg.total_steps > 0
    cfg = get_config(["--config_path", os.path.join(ROOT, "configs", "abpn_M4C28_x3.yaml"), "--lr", "0.1"])
    assert (cfg.scale, cfg.beta2, cfg.lr, cfg.lr_milestones) == (3, 0.99, 0.1, [1600000])
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"_base_: {os.path.join(ROOT, 'DIV2K_config.yaml')}\nlearning_rate: 1\n")
    with pytest.raises(ValueError, match="unknown key.*learning_rate"):
        load_yaml(str(bad))


def test_ema_checkpoints_hold_the_ema_weights_of_a_two_form_family(tmp_path):
    """With --ema_decay the validated and saved network is a copy built from the training net's spec
    (ETDS: training form with its converter) holding the EMA weights: same spec as without EMA,
    different weights."""
    from src.weights.checkpoint import read_checkpoint  # pylint: disable=import-outside-toplevel
    args = _data(tmp_path)
    args[args.index("abpn")] = "etds"
    saved = {}
    for decay in ("0", "0.5"):
        out = _train(args + ["--total_steps", "4", "--val_every", "4", "--ema_decay", decay,
                             "--ckpt_dir", str(tmp_path / f"ck{decay}")])
        assert out.returncode == 0, out.stderr[-2000:]
        last = glob.glob(str(tmp_path / f"ck{decay}" / "**" / "etds_M2C8_x2_last.ckpt"), recursive=True)
        assert len(last) == 1, out.stdout[-2000:]
        saved[decay] = read_checkpoint(last[0])
    (raw, raw_meta), (ema, ema_meta) = saved["0"], saved["0.5"]
    assert ema_meta == raw_meta and ema_meta["form"] == "train"
    assert sorted(ema) == sorted(raw)
    assert any(not np.array_equal(ema[k], raw[k]) for k in raw)
