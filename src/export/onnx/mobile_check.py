"""ORT-Mobile partition report of an ONNX file: how NNAPI and CoreML would split it.

The numbers are those of ``python -m onnxruntime.tools.check_onnx_model_mobile_usability FILE``:
the same onnxruntime helpers (the model optimised to the BASIC level as the ``.ort``
conversion does, shapes inferred, then each execution provider's supported-op table
applied with fixed input sizes required), returned instead of logged. See onnxruntime's
mobile docs ("ONNX Runtime Mobile: model usability checker", NNAPI / CoreML execution providers).
"""
import os
import pathlib
import tempfile

EXECUTION_PROVIDERS = ("NNAPI", "CoreML NeuralNetwork", "CoreML MLProgram")


def partition_report(path):
    """{EP name: {"nodes", "supported", "partitions", "unsupported_ops"}} for the ONNX file at ``path``
    (EP names as in :data:`EXECUTION_PROVIDERS`; node counts after BASIC optimisation). A graph a
    delegate runs whole has ``partitions == 1`` and ``supported == nodes``. The graph must have fixed
    input sizes (the mobile profile's ``1 x C x H x W``) for the counts to mean what a phone sees;
    onnxruntime's own errors (unreadable file, failed optimisation) pass through."""
    from onnxruntime.tools.mobile_helpers import usability_checker as usability  # pylint: disable=import-outside-toplevel
    from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo, optimize_model  # pylint: disable=import-outside-toplevel
    checks = {
        "NNAPI": usability.check_nnapi_partitions,
        "CoreML NeuralNetwork": lambda model, fixed: usability.check_coreml_partitions(
            model, fixed, "coreml_supported_neuralnetwork_ops.md"),
        "CoreML MLProgram": lambda model, fixed: usability.check_coreml_partitions(
            model, fixed, "coreml_supported_mlprogram_ops.md"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        optimized = pathlib.Path(tmp) / os.path.basename(path)
        optimize_model(pathlib.Path(path), optimized, use_external_initializers=True)
        model = ModelProtoWithShapeInfo(optimized).model_with_shape_info
        report = {}
        for name, check in checks.items():
            info = check(model, True)
            report[name] = {"nodes": info.num_nodes, "supported": info.num_supported_nodes,
                            "partitions": info.num_partitions, "unsupported_ops": sorted(info.unsupported_ops)}
    return report


def runs_whole(entry):
    """True if one partition of the delegate covers every node (``entry``: one value of
    :func:`partition_report`)."""
    return entry["partitions"] == 1 and entry["supported"] == entry["nodes"]


def format_report(report):
    """One line for a :func:`partition_report` result, providers in :data:`EXECUTION_PROVIDERS` order:
    ``NNAPI 1 partition 27/27 nodes; CoreML MLProgram ...`` (KeyError if one is missing)."""
    parts = []
    for name in EXECUTION_PROVIDERS:
        entry = report[name]
        text = (f"{name} {entry['partitions']} partition{'s' if entry['partitions'] != 1 else ''} "
                f"{entry['supported']}/{entry['nodes']} nodes")
        if entry["unsupported_ops"]:
            text += f" (not: {', '.join(entry['unsupported_ops'])})"
        parts.append(text)
    return "; ".join(parts)


__all__ = ["partition_report", "runs_whole", "format_report", "EXECUTION_PROVIDERS"]
