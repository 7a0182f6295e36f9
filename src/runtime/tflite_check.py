"""Read and check a .tflite file without TensorFlow (ai-edge-litert only).

- :func:`read_model`: the flatbuffer as the schema's object API (``ModelT``);
- :func:`op_names`, :func:`non_builtin_ops`: the operators (Flex / custom ops are not builtins);
- :func:`tensor_table`: every tensor's name, dtype, shape and quantization (scale, zero point,
  quantized dimension), and whether it is a constant;
- :func:`float_ops_inside`: ops that read or write a float tensor between the input QUANTIZE
  and the output DEQUANTIZE of a full-integer file (should be none);
- :func:`xnnpack_partitions`: how LiteRT's default XNNPACK delegate splits the graph. The
  interpreter lists, after the model's nodes, one ``DELEGATE`` node per partition; each
  partition covers the model nodes between its input and output tensors, so nodes outside
  every partition are the ones XNNPACK left to the builtin kernels. (LiteRT also logs
  "Replacing N out of M node(s) with delegate ... yielding K partitions" at verbose level
  only, so it cannot be captured in a default build.)
- :func:`run`: one inference with LiteRT's interpreter (2 threads by default), NHWC.

Follows the TFLite flatbuffer schema (``schema.fbs``, read through ai-edge-litert's generated
``schema_py_generated``) and the TFLite 8-bit quantization spec (``real = scale * (q -
zero_point)``, per-tensor activations, per-channel weights on ``quantized_dimension``). Every
reader raises ValueError naming requirements-mobile.txt when ai-edge-litert is not installed.
"""
import numpy as np

from src.utils.native_stderr import stderr_silenced
from src.errors import UserError
from src.utils.timing import median_ms

DEFAULT_THREADS = 2


def _schema():
    try:
        from ai_edge_litert import schema_py_generated  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise UserError("reading .tflite files needs ai-edge-litert: pip install -r requirements-mobile.txt") from None
    return schema_py_generated


def _bytes(data_or_path):
    if isinstance(data_or_path, (bytes, bytearray)):
        return bytes(data_or_path)
    with open(data_or_path, "rb") as f:
        return f.read()


def read_model(data_or_path):
    """``ModelT`` (the schema's object API) of TFLite bytes or a .tflite path; ValueError when it is not
    a TFLite flatbuffer (no ``TFL3`` identifier), OSError when the path cannot be read."""
    schema = _schema()
    data = _bytes(data_or_path)
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise UserError("not a TFLite file (no TFL3 flatbuffer identifier)")
    return schema.ModelT.InitFromPackedBuf(bytearray(data), 0)


def _enum_names(enum):
    return {v: k for k, v in vars(enum).items() if not k.startswith("_")}


def op_names(model):
    """Operator names of subgraph 0 of a ``ModelT`` in execution order: builtin names (e.g.
    ``CONV_2D``, ``QUANTIZE``), ``CUSTOM:<code>`` for custom and Flex ops."""
    schema = _schema()
    names = _enum_names(schema.BuiltinOperator)
    out = []
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        if builtin == schema.BuiltinOperator.CUSTOM:
            custom = code.customCode.decode() if isinstance(code.customCode, bytes) else str(code.customCode)
            out.append("CUSTOM:" + custom)
        else:
            out.append(names[builtin])
    return out


def non_builtin_ops(model):
    """Custom and Flex (select-TF) ops of the model: empty for a file the plain interpreter runs."""
    return [name for name in op_names(model) if name.startswith("CUSTOM:")]


def tensor_table(model):
    """One dict per tensor of subgraph 0: ``name``, ``dtype`` (e.g. ``INT8``), ``shape``, ``scale`` and
    ``zero_point`` (float32 / int64 arrays, None when not quantized), ``quantized_dimension`` and
    ``constant`` (True when the tensor has data in the file)."""
    schema = _schema()
    types = _enum_names(schema.TensorType)
    out = []
    for tensor in model.subgraphs[0].tensors:
        q = tensor.quantization
        quantized = q is not None and q.scale is not None and len(q.scale) > 0
        buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
        out.append({
            "name": tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name),
            "dtype": types[tensor.type],
            "shape": [int(v) for v in (tensor.shape if tensor.shape is not None else [])],
            "scale": np.asarray(q.scale, np.float32) if quantized else None,
            "zero_point": np.asarray(q.zeroPoint, np.int64) if quantized else None,
            "quantized_dimension": int(q.quantizedDimension) if quantized else None,
            "constant": buffer is not None and buffer.data is not None and len(buffer.data) > 0,
        })
    return out


def constant_data(model, index):
    """The data of constant tensor ``index`` of subgraph 0 as a numpy array of its dtype and stored
    shape (e.g. int8 ``O x H x W x I`` conv weights, int32 biases); KeyError for a tensor type other
    than INT8, UINT8, INT16, INT32, INT64, FLOAT16, FLOAT32."""
    tensor = model.subgraphs[0].tensors[index]
    dtype = {"INT8": np.int8, "UINT8": np.uint8, "INT32": np.int32, "FLOAT32": np.float32,
             "FLOAT16": np.float16, "INT64": np.int64, "INT16": np.int16}[tensor_table(model)[index]["dtype"]]
    raw = np.asarray(model.buffers[tensor.buffer].data, np.uint8)
    return raw.view(dtype).reshape([int(v) for v in tensor.shape])


def io_quantization(data_or_path):
    """``{"input": (dtype, scale, zero point), "output": (...)}`` of the graph's first input and output
    (dtype a TFLite type name such as ``UINT8``; scale a float and zero point an int, both None for a
    float tensor), from TFLite bytes or a path; ValueError as :func:`read_model`."""
    model = read_model(data_or_path)
    table = tensor_table(model)
    graph = model.subgraphs[0]
    out = {}
    for role, index in (("input", graph.inputs[0]), ("output", graph.outputs[0])):
        entry = table[index]
        scale = float(entry["scale"][0]) if entry["scale"] is not None else None
        zero = int(entry["zero_point"][0]) if entry["zero_point"] is not None else None
        out[role] = (entry["dtype"], scale, zero)
    return out


def float_ops_inside(model):
    """``[(index, op name)]`` of ops reading or writing a float activation, other than a QUANTIZE of
    the graph input and a DEQUANTIZE writing the graph output (constants are not counted)."""
    table = tensor_table(model)
    graph = model.subgraphs[0]
    inputs, outputs = set(graph.inputs.tolist()), set(graph.outputs.tolist())
    names = op_names(model)
    found = []
    for i, op in enumerate(graph.operators):
        if names[i] == "QUANTIZE" and set(op.inputs.tolist()) <= inputs:
            continue
        if names[i] == "DEQUANTIZE" and set(op.outputs.tolist()) <= outputs:
            continue
        tensors = [t for t in list(op.inputs) + list(op.outputs) if t >= 0 and not table[t]["constant"]]
        if any(table[t]["dtype"] in ("FLOAT32", "FLOAT16") for t in tensors):
            found.append((i, names[i]))
    return found


def interpreter(data_or_path, threads=DEFAULT_THREADS):
    """An allocated LiteRT ``Interpreter`` (default XNNPACK delegate, ``threads`` threads) for TFLite
    bytes or a path; LiteRT's own ValueError / RuntimeError for a file it cannot load."""
    try:
        from ai_edge_litert.interpreter import Interpreter  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise UserError("running .tflite files needs ai-edge-litert: pip install -r requirements-mobile.txt") from None
    with stderr_silenced():  # LiteRT's "INFO: Created ... XNNPACK delegate" line; errors raise
        interp = Interpreter(model_content=_bytes(data_or_path), num_threads=threads)
        interp.allocate_tensors()
    return interp


def file_timer(data_or_path, threads=DEFAULT_THREADS):
    """A zero-argument callable running the file once (LiteRT, XNNPACK, ``threads`` threads) on a fixed
    random input of its own shape and type (pixel values 0..255 for a float input); for timing."""
    interp = interpreter(data_or_path, threads)
    detail = interp.get_input_details()[0]
    rng = np.random.default_rng(0)
    if detail["dtype"] == np.float32:
        x = (rng.random(detail["shape"]) * 255).astype(np.float32)
    else:
        info = np.iinfo(detail["dtype"])
        x = rng.integers(info.min, info.max + 1, detail["shape"]).astype(detail["dtype"])

    def run():
        interp.set_tensor(detail["index"], x)
        interp.invoke()
    return run


def latency_samples(paths, threads=DEFAULT_THREADS, rounds=3, warmup=3, runs=10, on_round=None):
    """Per file of ``paths``, ``rounds`` latencies in ms (each the median of ``runs`` runs after ``warmup``,
    :func:`file_timer` at the file's own input), the files taking turns in every round so a busy machine
    slows them alike; ``on_round(k, samples)`` is called after round ``k`` (1-based)."""
    timers = [file_timer(path, threads) for path in paths]
    samples = [[] for _ in timers]
    for k in range(rounds):
        for timer, sample in zip(timers, samples):
            sample.append(median_ms(timer, warmup, runs))
        if on_round is not None:
            on_round(k + 1, samples)
    return samples


def xnnpack_partitions(data_or_path, threads=DEFAULT_THREADS):
    """``{"partitions": K, "nodes": M, "delegated": N, "left": [op names XNNPACK did not take]}`` of the
    file under LiteRT's default XNNPACK delegate (see the module docstring for how it is read)."""
    interp = interpreter(data_or_path, threads)
    raw = interp._interpreter  # pylint: disable=protected-access  # node lists are not in the public API
    names = [raw.NodeName(i) for i in range(raw.NumNodes())]
    model_nodes = [i for i, name in enumerate(names) if name != "DELEGATE"]
    delegates = [i for i, name in enumerate(names) if name == "DELEGATE"]
    writer = {t: i for i in model_nodes for t in raw.NodeOutputs(i)}
    covered = set()
    for node in delegates:
        entry = set(raw.NodeInputs(node))
        stack = list(raw.NodeOutputs(node))
        while stack:
            tensor = stack.pop()
            if tensor in entry or tensor not in writer or writer[tensor] in covered:
                continue
            covered.add(writer[tensor])
            stack.extend(raw.NodeInputs(writer[tensor]))
    left = [names[i] for i in model_nodes if i not in covered]
    return {"partitions": len(delegates), "nodes": len(model_nodes), "delegated": len(covered), "left": left}


def partition_line(report):
    """One line for a :func:`xnnpack_partitions` report."""
    line = (f"XNNPACK takes {report['delegated']} of {report['nodes']} node(s) in {report['partitions']} "
            f"partition(s)")
    return line + (f"; left to builtin kernels: {', '.join(report['left'])}" if report["left"] else "")


def partition_warning(report):
    """A warning line when XNNPACK does not take the file as one partition (each boundary hands the
    tensors to LiteRT's builtin kernels and back), naming the ops left out; ``""`` for a file taken whole."""
    if report["partitions"] <= 1 and not report["left"]:
        return ""
    left = sorted(set(report["left"]))
    return (f"warning: XNNPACK splits this file into {report['partitions']} partitions; "
            f"{len(report['left'])} node(s) run on the builtin kernels ({', '.join(left) or 'none'}) and every "
            "boundary costs a hand-over on the phone (its latency: scripts/bench_mobile.py)")


def run(interp, x_nhwc):
    """Output of ``interp`` (see :func:`interpreter`) for one NHWC input, as the file's dtype.

    A float32 input in [0, 1] is given as is to a float32 file and as ``round(255 x)`` to a
    uint8 file; the result is the raw output tensor (``1 x rH x rW x C``, float32 or uint8).
    ValueError when the input shape is not the file's fixed input shape."""
    detail = interp.get_input_details()[0]
    x = np.asarray(x_nhwc)
    if detail["dtype"] == np.uint8 and x.dtype != np.uint8:
        x = np.clip(np.floor(x * 255.0 + 0.5), 0, 255).astype(np.uint8)
    if tuple(detail["shape"]) != tuple(x.shape):
        raise UserError(f"the TFLite file takes a fixed input {tuple(detail['shape'])} (NHWC), not {tuple(x.shape)}")
    interp.set_tensor(detail["index"], x.astype(detail["dtype"]))
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


def run_nchw(interp, x_nchw):
    """Float32 NCHW in [0, 1] -> float32 NCHW in [0, 1] through the file (transposed to and from its
    NHWC; uint8 outputs divided by 255). ValueError as :func:`run`."""
    out = run(interp, np.ascontiguousarray(np.asarray(x_nchw).transpose(0, 2, 3, 1)))
    if out.dtype == np.uint8:
        out = out.astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2), np.float32)
