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
#: per test, ``[seconds (setup + call + teardown), seconds of setup]`` on a full run: ``pytest tests --store-durations``
DURATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "durations.json")
SLOW_SECONDS = 0.5  # a test that took at least this long on the recorded run is in the slow tier
# fixtures every test has: their set-up cost is the test's own
_PER_TEST_FIXTURES = {"request", "tmp_path", "tmp_path_factory", "capsys", "capfd", "monkeypatch", "caplog",
                      "_mindspore_context"}


def pytest_addoption(parser):
    parser.addoption("--store-durations", action="store_true",
                     help=f"write every test's duration of this run into {os.path.basename(DURATIONS)} (the tiers)")


def pytest_configure(config):
    config.addinivalue_line("markers", f"slow: took at least {SLOW_SECONDS:g} s on the run recorded in "
                                       f"tests/{os.path.basename(DURATIONS)}, or uses a fixture whose set-up did; "
                                       "the fast lane is -m 'not slow'")
    config.addinivalue_line("markers", "sweep: a case of the bad-input catalogue (tests/bad_input_sweep.py), run "
                                       "against this tree in its own processes")


def _recorded():
    try:
        with open(DURATIONS, encoding="utf-8") as fh:
            return {k: v if isinstance(v, list) else [v, 0.0] for k, v in json.load(fh).items()}
    except (OSError, ValueError):
        return {}


def pytest_collection_modifyitems(config, items):
    """Mark ``slow`` every test that took SLOW_SECONDS on the recorded run, and every test using a shared
    fixture whose set-up took that long there (a module fixture is paid by whichever test runs first)."""
    recorded = _recorded()
    expensive = set()
    for item in items:
        total, setup = recorded.get(item.nodeid, [0.0, 0.0])
        if setup >= SLOW_SECONDS:
            expensive |= set(getattr(item, "fixturenames", ())) - _PER_TEST_FIXTURES
    for item in items:
        total, _ = recorded.get(item.nodeid, [0.0, 0.0])
        if total >= SLOW_SECONDS or expensive & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


_SEEN = {}  # nodeid -> [seconds, seconds of setup] of this run


def pytest_runtest_logreport(report):
    seen = _SEEN.setdefault(report.nodeid, [0.0, 0.0])
    seen[0] += report.duration
    if report.when == "setup":
        seen[1] += report.duration


def pytest_sessionfinish(session):
    if not _SEEN or not session.config.getoption("--store-durations") or hasattr(session.config, "workerinput"):
        return  # (an xdist worker: the controller, which sees every report, writes the file)
    recorded = _recorded()
    recorded.update({k: [round(v[0], 3), round(v[1], 3)] for k, v in _SEEN.items()})
    with open(DURATIONS, "w", encoding="utf-8") as fh:
        json.dump(dict(sorted(recorded.items())), fh, indent=0)
