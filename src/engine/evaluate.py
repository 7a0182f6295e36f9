"""eval.py's engine: an exported file (.onnx, .ort, .mindir, .tflite) is evaluated by
:mod:`src.engine.file_eval`, a MindSpore checkpoint by :mod:`src.engine.checkpoint_eval`; both report
through :mod:`src.engine.evaluator`, which imports neither."""
from src.engine.checkpoint_eval import run_checkpoint_evaluation
from src.engine.file_eval import is_exported_file, run_file_evaluation


def run_evaluation(config, log=print):
    """Evaluate ``config.pre_trained`` (a checkpoint or an exported file); returns the JSON-ready report."""
    if is_exported_file(config.pre_trained):
        return run_file_evaluation(config, log)
    return run_checkpoint_evaluation(config, log)
