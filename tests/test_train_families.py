"""Every family trains a few steps through the training engine; its checkpoint evaluates as the deploy form."""
import os

import numpy as np
import pytest
import mindspore as ms

from conftest import write_smooth_images
from model_utils.config import get_config
from src.engine.trainer import train
from src.weights.checkpoint import read_checkpoint
from src.weights.loader import load_for_inference


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("traindata")
    write_smooth_images(root / "train", 3, 96)
    write_smooth_images(root / "data" / "benchmark" / "Val" / "HR", 1, 48, seed=1)
    return root


CASES = [("sesr", "M3", ["--linear_block_type", "collapsed", "--feature_size", "16"], "SESRDeploy"),
         ("sesr", "M3", ["--linear_block_type", "collapsed_adder", "--feature_size", "16"], "SESRDeploy"),
         ("etds", "M5C16", [], "ETDSPlain"),
         ("ecbsr", "M4C8", [], "ECBSRPlain"),
         ("abpn", "M2C8", [], "ABPN")]


@pytest.mark.parametrize("model,variant,extra,deploy_type", CASES, ids=[f"{c[0]}-{c[2][1] if c[2] else ''}" for c in CASES])
def test_family_trains_and_checkpoint_evaluates(tiny_data, tmp_path, model, variant, extra, deploy_type):
    cfg = get_config(["--model", model, "--variant", variant, "--scale", "2", "--train_path", str(tiny_data / "train"),
                      "--val_data_path", str(tiny_data / "data"), "--val_datasets", "Val", "--patch_size", "16",
                      "--batch_size", "2", "--total_steps", "2", "--val_every", "2", "--ckpt_dir", str(tmp_path),
                      "--cache_dir", str(tmp_path / "cache"), *extra])
    lines = []
    best = train(cfg, log=lines.append)
    assert 5.0 < best < 60.0
    ckpt = os.path.join(tmp_path, f"{model}_{variant}_x2_last.ckpt")
    _, meta = read_checkpoint(ckpt)
    assert meta["model"] == model and meta["scale"] == 2
    deploy, _ = load_for_inference(model, variant, 2, ckpt)
    assert type(deploy).__name__ == deploy_type
    n = deploy.n_colors if hasattr(deploy, "n_colors") else 3
    x = ms.Tensor(np.random.default_rng(1).random((1, n, 8, 8)).astype(np.float32))
    deploy.set_train(False)
    assert np.isfinite(deploy(x).asnumpy()).all()
    assert any("step 2/2" in l for l in lines)


def test_init_from_reports_copied_tensors(tiny_data, tmp_path):
    common = ["--model", "sesr", "--variant", "M3", "--feature_size", "16", "--train_path", str(tiny_data / "train"),
              "--val_data_path", str(tiny_data / "data"), "--val_datasets", "Val", "--patch_size", "16",
              "--batch_size", "2", "--total_steps", "1", "--val_every", "1", "--ckpt_dir", str(tmp_path),
              "--cache_dir", str(tmp_path / "cache")]
    train(get_config(common + ["--scale", "2"]), log=lambda *_: None)
    lines = []
    train(get_config(common + ["--scale", "4", "--init_from", str(tmp_path / "sesr_M3_x2_last.ckpt")]),
          log=lines.append)
    note = [l for l in lines if l.startswith("initialised from")][0]
    assert "copied 21 tensors" in note  # all 23 SESR-M3 tensors but the x4 output projection and "output_block.project" in note
