import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import src  # noqa: E402,F401  (CPU runtime defaults before mindspore loads)


@pytest.fixture(scope="session", autouse=True)
def _mindspore_context():
    import mindspore as ms
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")


def shared_dir():
    path = os.environ.get("SR_SHARED", "")
    return path if path and os.path.isdir(path) else None


requires_shared = pytest.mark.skipif(
    shared_dir() is None, reason="SR_SHARED is not set to the shared data folder (../shared)")


def write_quant_run(root, net):
    """A folder for a quantized CLI run under ``root`` (a pathlib.Path): benchmark set ``Q`` (2 smooth
    48px HR images under ``data/benchmark/Q/HR``), 3 smooth 96px calibration images under ``calib``
    and ``net`` saved as ``fp.ckpt`` with its metadata. Returns the checkpoint's path."""
    from src.weights.checkpoint import model_meta, save_checkpoint
    write_smooth_images(root / "data" / "benchmark" / "Q" / "HR", 2, 48)
    write_smooth_images(root / "calib", 3, 96, seed=1)
    ckpt = str(root / "fp.ckpt")
    save_checkpoint(net, ckpt, meta=model_meta(net))
    return ckpt


def write_smooth_images(folder, count, size, seed=0):
    """``count`` smooth (upscaled noise) uint8 RGB PNGs of ``size`` x ``size`` in ``folder``."""
    import cv2
    import numpy as np
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        small = rng.integers(0, 256, (max(1, size // 8), max(1, size // 8), 3)).astype(np.uint8)
        cv2.imwrite(os.path.join(str(folder), f"{i}.png"), cv2.resize(small, (size, size)))


# ---- tiers: the fast lane is ``pytest -m "not slow"`` -------------------------------------------------------------
#: seconds per test (setup + call + teardown) measured on a full run: ``pytest tests --store-durations``
DURATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "durations.json")
SLOW_SECONDS = 1.0  # a test that took at least this long on the recorded run is in the slow tier


def pytest_addoption(parser):
    parser.addoption("--store-durations", action="store_true",
                     help=f"write every test's duration of this run into {os.path.basename(DURATIONS)} (the tiers)")


def pytest_configure(config):
    config.addinivalue_line("markers", f"slow: took at least {SLOW_SECONDS:g} s on the run recorded in "
                                       f"tests/{os.path.basename(DURATIONS)}; the fast lane is -m 'not slow'")


def pytest_collection_modifyitems(config, items):
    try:
        with open(DURATIONS, encoding="utf-8") as fh:
            recorded = json.load(fh)
    except (OSError, ValueError):
        recorded = {}
    for item in items:
        if recorded.get(item.nodeid, 0.0) >= SLOW_SECONDS:
            item.add_marker(pytest.mark.slow)


_SEEN = {}  # nodeid -> seconds of this run (setup + call + teardown)


def pytest_runtest_logreport(report):
    _SEEN[report.nodeid] = _SEEN.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session):
    if not _SEEN or not session.config.getoption("--store-durations"):
        return
    try:
        with open(DURATIONS, encoding="utf-8") as fh:
            recorded = json.load(fh)
    except (OSError, ValueError):
        recorded = {}
    recorded.update({k: round(v, 3) for k, v in _SEEN.items()})
    with open(DURATIONS, "w", encoding="utf-8") as fh:
        json.dump(dict(sorted(recorded.items())), fh, indent=0)

