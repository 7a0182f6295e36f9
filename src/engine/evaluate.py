"""eval.py's engine: an exported file (.onnx, .ort, .mindir, .tflite) is evaluated by
:mod:`src.engine.file_eval`, a MindSpore checkpoint by :mod:`src.engine.checkpoint_eval`; both report
through :mod:`src.engine.evaluator`, which imports neither."""
from src.engine.checkpoint_eval import run_checkpoint_evaluation
from src.engine.file_eval import is_exported_file, run_file_evaluation
from src.engine.sections import evaluation_sections
from src.paths import resolve_path, select_checkpoint


def run_evaluation(config, log=print):
    """Evaluate ``config.pre_trained`` (a checkpoint or an exported file); returns the JSON-ready report.
    The configuration stops here: its sections (:func:`~src.engine.sections.evaluation_sections`) and the
    located file are built once and handed down."""
    evaluation = evaluation_sections(config)
    if is_exported_file(evaluation.pre_trained):
        return run_file_evaluation(evaluation, resolve_path(config, evaluation.pre_trained), log)
    return run_checkpoint_evaluation(evaluation, select_checkpoint(config), log)
