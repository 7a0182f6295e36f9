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
