"""One evaluation over labelled predictors: the float, float+quantized and exported-file runs share it."""
import json
import os

import cv2

from conftest import write_smooth_images
from src.data.eval_sets import resolve_eval_set
from src.engine.evaluator import Subject, evaluate_predictors, evaluate_subject
from src.engine.sections import EvalData, EvalOutputs, EvalProtocol, Evaluation, Inference, quantization_of
from src.models.choice import ModelChoice


class _Resize:
    """A stand-in predictor: OpenCV x2 resize of the uint8 LR image."""

    def __init__(self, interpolation):
        self.interpolation = interpolation

    def predict(self, lr):
        return cv2.resize(lr, (lr.shape[1] * 2, lr.shape[0] * 2), interpolation=self.interpolation)


def _setup(tmp_path):
    write_smooth_images(tmp_path / "data" / "benchmark" / "S" / "HR", 2, 48)
    protocol = EvalProtocol(2, 12, "y", -1, str(tmp_path / "cache"))
    sets = [resolve_eval_set(str(tmp_path / "data"), "S", 2)]
    return protocol, sets


def test_two_predictors_side_by_side_last_one_saved(tmp_path):
    protocol, sets = _setup(tmp_path)
    lines = []
    predictors = (("results_fp", "FP", _Resize(cv2.INTER_CUBIC)), ("results", "W8A8 x", _Resize(cv2.INTER_NEAREST)))
    by_key, failed, _ = evaluate_predictors(predictors, sets, protocol, str(tmp_path / "sr"), lines.append)
    assert not failed and set(by_key) == {"results_fp", "results"}
    assert by_key["results_fp"]["S"]["psnr"] > by_key["results"]["S"]["psnr"]  # bicubic beats nearest
    assert "W8A8 x PSNR" in lines[0] and "drop (dB)" in lines[0]
    assert sorted(os.listdir(tmp_path / "sr" / "S")) == ["0.png", "1.png"]  # the reported predictor's SR images
    assert cv2.imread(str(tmp_path / "sr" / "S" / "0.png")).shape == (48, 48, 3)
    one = []
    alone, _, _ = evaluate_predictors(predictors[1:], sets, protocol, None, one.append)
    assert alone["results"] == by_key["results"] and one[0].startswith("dataset") and "PSNR (dB)" in one[0]


def test_one_report_writer_keeps_the_key_order(tmp_path):
    protocol, sets = _setup(tmp_path)
    evaluation = Evaluation(ModelChoice("m", "v", 2, ()), "x.ckpt", EvalData(str(tmp_path / "data"), ("S",), False),
                            protocol, Inference(False, -1, -1, 6.0), EvalOutputs(str(tmp_path), False, ""),
                            frozenset(), quantization_of(_config()))
    predictors = (("results_fp", "FP", _Resize(cv2.INTER_CUBIC)), ("results", "Q", _Resize(cv2.INTER_NEAREST)))
    subject = Subject("intro", predictors, {"quant": {"method": "q"}, "model": "m"}, None, str(tmp_path / "r.json"),
                      data_path_recorded=False, sr_dir_logged=False)
    lines = []
    report = evaluate_subject(subject, evaluation, sets, "", lines.append)
    assert list(report) == ["results", "results_fp", "quant", "model", "protocol", "self_ensemble", "data_note",
                            "seconds"]
    assert json.loads((tmp_path / "r.json").read_text())["results"] == report["results"]
    assert lines[0] == "intro" and lines[-1] == f"results written to {tmp_path / 'r.json'}"
    plain = Subject("intro", predictors[1:], {"model": "m"}, None, str(tmp_path / "p.json"), notes={"notice": "n"})
    report = evaluate_subject(plain, evaluation, sets, "note", lambda *_: None)
    assert list(report) == ["results", "model", "protocol", "self_ensemble", "data_path", "data_note", "seconds",
                            "notice"]


def _config():
    from model_utils.config import get_config  # pylint: disable=import-outside-toplevel
    return get_config([])
