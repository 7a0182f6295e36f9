"""Kinds of faults found on the recent features (results from the wrong run, bombs, shared run folders,
files replaced before their check, impossible shapes, skipped inputs, unchecked metadata, unhelpful
errors): one test per kind with the example's right behaviour."""
import os

import pytest

from src.models.registry import create_model
from src.weights.checkpoint import model_meta, save_checkpoint


@pytest.fixture(scope="module")
def float_ckpt(tmp_path_factory):
    net = create_model("abpn", "M2C8", 3)
    path = str(tmp_path_factory.mktemp("ck") / "abpn.ckpt")
    save_checkpoint(net, path, meta=model_meta(net))
    return path


def _export(ckpt, out, fmt, *extra):
    from model_utils.config import get_config  # pylint: disable=import-outside-toplevel
    from src.export.exporter import run_export  # pylint: disable=import-outside-toplevel
    config = get_config(["--model", "abpn", "--variant", "M2C8", "--scale", "3", "--pre_trained", ckpt,
                         "--file_format", fmt, "--input_shape", "1,3,16,16", "--export_file", out, *extra])
    return run_export(config, log=lambda *_: None)


@pytest.mark.parametrize("fmt,ext", [("ONNX", "onnx"), ("MINDIR", "mindir")])
def test_a_file_that_fails_its_check_never_replaces_the_earlier_one(float_ckpt, tmp_path, monkeypatch, fmt, ext):
    """Kind 4: the writer checks the temporary file and only then replaces the target."""
    from src.export import exporter  # pylint: disable=import-outside-toplevel
    target = str(tmp_path / f"m.{ext}")
    _export(float_ckpt, target, fmt)
    before = open(target, "rb").read()
    monkeypatch.setattr(exporter, "FLOAT_TOLERANCE", 0.0)  # every check now fails
    with pytest.raises(ValueError, match="differs from MindSpore"):
        _export(float_ckpt, target, fmt)
    assert open(target, "rb").read() == before
    assert sorted(os.listdir(tmp_path)) == [f"m.{ext}"]  # no temporary file left behind
