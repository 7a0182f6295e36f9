import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn

from src.engine.losses import SRLoss
from src.engine.train_step import TrainStep
from src.models.registry import create_model

RNG = np.random.default_rng(0)


def _batch(n_colors=3, bad=False):
    lr = RNG.random((2, n_colors, 8, 8)).astype(np.float32)
    if bad:
        lr[0, 0, 0, 0] = np.nan
    return Tensor(lr), Tensor(RNG.random((2, n_colors, 16, 16)).astype(np.float32))


def _values(params):
    return {p.name: p.data.asnumpy().copy() for p in params}


def test_residual_freeze_holds_then_releases():
    net = create_model("etds", "M5C16", 2, form="train")
    net.train_outputs = True
    opt = nn.Adam(net.trainable_params(), learning_rate=1e-2)
    frozen = net.residual_parameters()
    step = TrainStep(SRLoss(net), opt, frozen)
    step.set_train(True)
    before = _values(net.trainable_params())
    for _ in range(2):
        step(*_batch(), Tensor(1.0, ms.float32))
    during = _values(net.trainable_params())
    frozen_names = {p.name for p in frozen}
    for name in before:
        changed = not np.array_equal(before[name], during[name])
        assert changed != (name in frozen_names), name
    step(*_batch(), Tensor(0.0, ms.float32))
    after = _values(net.trainable_params())
    assert any(not np.array_equal(during[n], after[n]) for n in frozen_names)


def test_non_finite_batch_skips_update():
    net = create_model("abpn", "M2C8", 2)
    step = TrainStep(SRLoss(net), nn.Adam(net.trainable_params(), learning_rate=1e-2))
    step.set_train(True)
    before = _values(net.trainable_params())
    _, finite = step(*_batch(bad=True), Tensor(0.0, ms.float32))
    assert not bool(finite.asnumpy())  # the clamp may keep the loss finite; the gradients are not
    for name, value in _values(net.trainable_params()).items():
        np.testing.assert_array_equal(value, before[name])
    _, finite = step(*_batch(), Tensor(0.0, ms.float32))
    assert bool(finite.asnumpy())


def test_ema_follows_recurrence():
    net = create_model("abpn", "M2C8", 2)
    decay = 0.9
    step = TrainStep(SRLoss(net), nn.Adam(net.trainable_params(), learning_rate=1e-2), ema_decay=decay)
    step.set_train(True)
    expected = _values(net.trainable_params())
    for _ in range(3):
        step(*_batch(), Tensor(0.0, ms.float32))
        current = _values(net.trainable_params())
        expected = {k: decay * expected[k] + (1 - decay) * current[k] for k in expected}
    ema = step.ema_weights()
    for name, value in expected.items():
        np.testing.assert_allclose(ema[name], value, rtol=1e-5, atol=1e-7)
        assert not np.allclose(ema[name], current[name])


def test_trainer_stops_after_consecutive_bad_steps(tmp_path, monkeypatch):
    import cv2
    from model_utils.config import get_config
    from src.data import train_set
    from src.engine.trainer import train
    (tmp_path / "train").mkdir()
    (tmp_path / "data" / "benchmark" / "Val" / "HR").mkdir(parents=True)
    for name, folder in (("a", tmp_path / "train"), ("v", tmp_path / "data" / "benchmark" / "Val" / "HR")):
        cv2.imwrite(str(folder / f"{name}.png"), RNG.integers(0, 256, (48, 48, 3)).astype(np.uint8))
    real_item = train_set.PatchSource.__getitem__

    def nan_item(self, position):
        lr, hr = real_item(self, position)
        return np.full_like(lr, np.nan), hr
    monkeypatch.setattr(train_set.PatchSource, "__getitem__", nan_item)
    cfg = get_config(["--model", "abpn", "--variant", "M2C8", "--scale", "2", "--train_path", str(tmp_path / "train"),
                      "--val_data_path", str(tmp_path / "data"), "--val_datasets", "Val", "--patch_size", "8",
                      "--batch_size", "2", "--total_steps", "20", "--val_every", "10", "--max_bad_steps", "3",
                      "--ckpt_dir", str(tmp_path / "ck"), "--cache_dir", str(tmp_path / "c")])
    with pytest.raises(FloatingPointError, match="3 consecutive steps with a non-finite loss"):
        train(cfg, log=lambda *_: None)
