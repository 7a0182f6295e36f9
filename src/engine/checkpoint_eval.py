"""eval.py on a MindSpore checkpoint: the float model, or the float and the quantized model side by side
(calibrated now with ``--quant_method``, or a calibrated checkpoint as it is), through the shared
evaluation of :mod:`src.engine.evaluator`."""
from src.data.eval_sets import resolve_eval_set
from src.engine.evaluator import Subject, describe_protocol, evaluate_subject, output_paths, select_datasets
from src.engine.inference import SRPredictor
from src.utils.atomic import refuse_same_file
from src.weights.checkpoint import open_checkpoint
from src.weights.loader import load_for_inference
from src.engine.quant_eval import build_quantized


def run_checkpoint_evaluation(evaluation, ckpt, log=print):
    """Evaluate the MindSpore checkpoint ``ckpt`` (its path: ``--pre_trained`` or the shipped one; float,
    or quantized: calibrated now with ``--quant_method`` or already calibrated) as the sections
    ``evaluation`` (:class:`~src.engine.sections.Evaluation`) say; returns the JSON-ready report dict.
    """
    names, note = select_datasets(evaluation)
    if note:
        log(note)
    if evaluation.outputs.result_file:  # the path write_json uses
        refuse_same_file(ckpt, evaluation.outputs.result_file, "--result_file", "--pre_trained")
    eval_sets = [resolve_eval_set(evaluation.data.data_path, name, evaluation.protocol.scale)
                 for name in names]  # fail before work
    read = open_checkpoint(ckpt)  # the one read of the file; everything below is built from it
    if evaluation.quant.method or read.calibrated:  # a PTQ run: calibrate now, or the calibrated file as is
        built = build_quantized(evaluation.model, evaluation.quant, read, log)
        subject = quantized_subject(evaluation, ckpt, names, built)
    else:
        subject = float_subject(evaluation, read, names)
    return evaluate_subject(subject, evaluation, eval_sets, note, log)


def float_subject(evaluation, read, names):
    """The float checkpoint ``read`` (a :class:`~src.weights.checkpoint.CheckpointFile`): one predictor."""
    model = evaluation.model
    ckpt = read.path
    net, _ = load_for_inference(model.model, model.variant, model.scale, read, model.option_dict())
    stem = f"{model.model}_{net.variant}_x{model.scale}"
    intro = (f"evaluating {model.model}-{net.variant} x{model.scale} from {ckpt} on {', '.join(names)} "
             f"{describe_protocol(evaluation)}")
    predictor = SRPredictor.configured(net, model.scale, evaluation.inference)
    identity = {"model": model.model, "variant": net.variant, "scale": model.scale, "pre_trained": ckpt}
    return Subject(intro, (("results", None, predictor),), identity,
                   *output_paths(evaluation, f"sr_{stem}", f"eval_{stem}.json"))


def quantized_subject(evaluation, ckpt, names, built):
    """Float and quantized model (``built``: ``(fp_net, q_net, info)`` of
    :func:`~src.engine.quant_eval.build_quantized`) on the same sets; the quantized one is reported."""
    fp_net, q_net, info = built
    model = evaluation.model
    label = f"W{info['w_bit']}A{info['a_bit']} {info['method']}"
    stem = f"{model.model}_{fp_net.variant}_x{model.scale}_w{info['w_bit']}a{info['a_bit']}"
    placement = info.get("placement", "ptq4sr")
    intro = (f"evaluating {model.model}-{fp_net.variant} x{model.scale} from {ckpt}: FP and {label} on {', '.join(names)}"
             + (" (deploy placement: the int8 file's arithmetic)" if placement == "deploy" else
                " (ptq4sr placement: conv inputs and weights rounded, not the int8 file's arithmetic)"))
    predictors = (("results_fp", "FP", SRPredictor.configured(fp_net, model.scale, evaluation.inference)),
                  ("results", label, SRPredictor.configured(q_net, model.scale, evaluation.inference)))
    identity = {"quant": info, "model": model.model, "variant": fp_net.variant, "scale": model.scale,
                "pre_trained": ckpt}
    save_dir, result_file = output_paths(evaluation, f"sr_{stem}", f"eval_{stem}_{info['method']}.json")
    return Subject(intro, predictors, identity, save_dir, result_file, data_path_recorded=False, sr_dir_logged=False)
