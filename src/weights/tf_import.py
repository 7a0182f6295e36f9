"""Import float weights from the TensorFlow world: float ``.tflite`` files and Keras SavedModel folders.

Sources: MLPerf Mobile's super-resolution EDSR (``edsr_f32b5_fp32.tflite``, mobile layout, see
src/models/edsr.py) and the ABPN authors' Keras ``base7`` (NJU-Jet/SR_Mobile_Quantization, a SavedModel;
src/models/abpn.py). Both are plain chains of 3x3 convs (stride 1, SAME padding) with ReLUs, adds, a
concatenated anchor and TensorFlow's depth-to-space (DCR, as MindSpore's), so a source is read as the
ordered list of its convs and each family's ``tf_map`` (its record in src/models) names them.

Read with the maintained readers, no flatbuffer or protobuf parsing by hand:

- ``.tflite``: LiteRT's interpreter gives the tensors (``get_tensor``), the schema module LiteRT ships
  (``ai_edge_litert.schema_py_generated``) the operators in execution order and their options (fused
  ReLU, padding, stride). Only float32 weights are imported: an int8 file is refused (its weights are
  rounded; import the float file it was made from).
- SavedModel: ``tf.train.load_checkpoint`` reads ``variables/``; Keras names them
  ``layer_with_weights-<i>/{kernel,bias}`` in layer order (HWIO kernels). The graph itself is run only
  for the equality check, through TensorFlow's SavedModel loader, and only when every op its serving
  function can reach is plain arithmetic (:data:`RUNNABLE_TF_OPS`).

Pixel range: both sources take pixels in 0..255. A network of convs, ReLUs, adds, concatenations and
depth-to-space is positively homogeneous, f(a x) = a f(x) for a > 0 once every bias is scaled by a, so
dividing every bias by 255 gives the same network on [0, 1] images (the clip at 255 becomes the clip at 1
that our models apply). The range is proven on a test image (src/utils/file_probe.py) unless given.

Every conversion is checked: the converted network and the source run on the same images and must agree
within :data:`MAX_IMPORT_DIFF` of the 0..1 range, else :class:`CheckpointError`.
"""
import os
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from src.models.registry import FAMILIES
from src.utils.native_stderr import import_tensorflow_quietly, stderr_silenced
from src.utils.file_probe import choose_pixel_range, describe_scores, pixel_range_scores, probe_image
from src.weights.checkpoint import CheckpointError, check_fit

MAX_IMPORT_DIFF = 1e-4  # of the 0..1 range: float32 sums in another order stay ~1e-6 apart
TFLITE_OPS = {"CONV_2D", "ADD", "CONCATENATION", "DEPTH_TO_SPACE", "MINIMUM", "MAXIMUM", "RELU", "RELU6"}
RUNNABLE_TF_OPS = frozenset({
    "AddV2", "Add", "BiasAdd", "ConcatV2", "Const", "Conv2D", "DepthToSpace", "Identity", "IdentityN", "Maximum",
    "Minimum", "Relu", "Relu6", "ReadVariableOp", "Mul", "Sub", "ClipByValue", "NoOp", "PartitionedCall",
    "StatefulPartitionedCall", "Placeholder", "VarHandleOp", "Pack", "Reshape", "Transpose"})


@dataclass(frozen=True)
class SourceConv:
    """One 3x3 conv of the source: ``weight`` float32 (out, in, kh, kw) (MindSpore's OIHW), ``bias``
    float32 (out,), ``relu`` True/False when the source says whether a ReLU is fused on it, None when
    it cannot (a SavedModel's variables)."""
    name: str
    weight: np.ndarray
    bias: np.ndarray
    relu: Optional[bool]


@dataclass
class TFSource:
    """A TensorFlow source opened for import: its ``convs`` in execution order, the ``ops`` it uses
    (counts; empty for a SavedModel, whose graph is checked separately), ``run`` (float32 NCHW in the
    source's own pixel range -> NCHW) and what it is, in words (``kind``)."""
    path: str
    kind: str
    convs: list
    ops: Counter
    run: Callable


class ConvList:
    """The source's convs handed to a family's ``tf_map``: ``assign`` names them in order."""

    def __init__(self, source, bias_scale):
        self.source = source
        self.bias_scale = bias_scale

    @staticmethod
    def fail(message):
        """Raise CheckpointError(``message``)."""
        raise CheckpointError(message)

    def assign(self, names, relu_after):
        """``{name.weight, name.bias: array}`` for ``names`` (ours, in the source's order); ``relu_after``:
        whether a ReLU follows each (checked where the source says). Biases are multiplied by the
        pixel-range factor. CheckpointError when the count or a ReLU differs."""
        convs = self.source.convs
        if len(convs) != len(names):
            self.fail(f"{self.source.path} has {len(convs)} convs where this model has {len(names)}; wrong "
                      "--model/--variant?")
        out = {}
        for name, relu, conv in zip(names, relu_after, convs):
            if conv.relu is not None and conv.relu != relu:
                self.fail(f"{self.source.path}: conv {conv.name} is {'' if conv.relu else 'not '}followed by a ReLU "
                          f"where {name} is {'' if relu else 'not'}; it is another architecture")
            out[f"{name}.weight"] = np.ascontiguousarray(conv.weight, np.float32)
            out[f"{name}.bias"] = np.ascontiguousarray(conv.bias * self.bias_scale, np.float32)
        return out


def _tflite_modules():
    try:
        from ai_edge_litert import schema_py_generated  # pylint: disable=import-outside-toplevel
        from ai_edge_litert.interpreter import Interpreter  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise CheckpointError("reading .tflite files needs ai-edge-litert: pip install -r requirements-mobile.txt") \
            from None
    return schema_py_generated, Interpreter


def _op_names(schema):
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def read_tflite_source(path):
    """:class:`TFSource` of a float ``.tflite`` file. CheckpointError (one line) for a file LiteRT
    cannot read, more than one input or output, an op or conv form with no counterpart here
    (:data:`TFLITE_OPS`; 3x3, stride 1, SAME only), or int8/float16 weights."""
    schema, interpreter_class = _tflite_modules()
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
        with stderr_silenced():  # LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate" line; errors raise
            interpreter = interpreter_class(model_path=path, num_threads=2)
            interpreter.allocate_tensors()
    except Exception as exc:  # pylint: disable=broad-except  # flatbuffers / LiteRT raise assorted types
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable TFLite file ({reason})") from None
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise CheckpointError(f"{path} has {len(inputs)} inputs and {len(outputs)} outputs; an SR network takes one "
                              "image and gives one")
    if len(model.subgraphs) != 1:
        raise CheckpointError(f"{path} has {len(model.subgraphs)} subgraphs; only single-graph files are imported")
    names = _op_names(schema)
    graph = model.subgraphs[0]
    ops, convs = Counter(), []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
        ops[name] += 1
        if name in ("QUANTIZE", "DEQUANTIZE") or name not in TFLITE_OPS:
            if name in ("QUANTIZE", "DEQUANTIZE"):
                raise CheckpointError(f"{path} is a quantized file ({name} ops, integer or float16 weights): this "
                                      "importer takes float weights only; import the float32 file it was made from")
            raise CheckpointError(f"{path} uses {name}, which no model here has; import SR networks of convs, "
                                  "ReLUs, adds, concatenations and depth-to-space only")
        if name != "CONV_2D":
            continue
        opt = op.builtinOptions
        w_detail = interpreter._get_tensor_details(op.inputs[1], 0)  # pylint: disable=protected-access
        if np.dtype(w_detail["dtype"]) != np.float32:
            raise CheckpointError(f"{path} holds {np.dtype(w_detail['dtype']).name} conv weights: this importer takes "
                                  "float weights only; import the float32 file it was made from (an int8 file's "
                                  "weights are already rounded)")
        weight = interpreter.get_tensor(op.inputs[1])  # OHWI
        if weight.shape[1:3] != (3, 3) or opt.strideH != 1 or opt.strideW != 1 or opt.padding != 0:
            raise CheckpointError(f"{path}: conv {w_detail['name'][:60]} is {weight.shape[1]}x{weight.shape[2]} "
                                  f"stride {opt.strideH} {'VALID' if opt.padding else 'SAME'}; only 3x3 stride-1 SAME "
                                  "convs have a counterpart here")
        bias = interpreter.get_tensor(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 \
            else np.zeros(weight.shape[0], np.float32)
        if opt.fusedActivationFunction not in (0, 1):
            raise CheckpointError(f"{path}: conv {w_detail['name'][:60]} has a fused activation other than ReLU")
        convs.append(SourceConv(w_detail["name"].split(";")[0], weight.transpose(0, 3, 1, 2).copy(), bias.copy(),
                                opt.fusedActivationFunction == 1))
    if inputs[0]["dtype"] != np.float32 or outputs[0]["dtype"] != np.float32:
        raise CheckpointError(f"{path} takes {np.dtype(inputs[0]['dtype']).name} input: it is a quantized file; this "
                              "importer takes float weights only, import the float32 file it was made from")
    index_in, index_out = inputs[0]["index"], outputs[0]["index"]

    def run(x):
        nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1), np.float32)
        interpreter.resize_tensor_input(index_in, list(nhwc.shape), strict=False)
        interpreter.allocate_tensors()
        interpreter.set_tensor(index_in, nhwc)
        interpreter.invoke()
        return interpreter.get_tensor(index_out).transpose(0, 3, 1, 2).copy()

    return TFSource(path, "float TFLite", convs, ops, run)


def _reachable_ops(meta_graph, signature):
    """Op types the ``signature`` of a SavedModel meta graph can reach (its output nodes' functions, called
    functions transitively)."""
    library = {f.signature.name: f for f in meta_graph.graph_def.library.function}
    nodes = {n.name: n for n in meta_graph.graph_def.node}
    sig = meta_graph.signature_def[signature]
    todo = [nodes[t.name.split(":")[0]] for t in sig.outputs.values() if t.name.split(":")[0] in nodes]
    seen_fn, ops = set(), set()
    while todo:
        node = todo.pop()
        ops.add(node.op)
        for attr in node.attr.values():
            called = [attr.func.name] if attr.HasField("func") else [f.name for f in attr.list.func]
            for name in called:
                if name in library and name not in seen_fn:
                    seen_fn.add(name)
                    todo.extend(library[name].node_def)
        if node.op in library and node.op not in seen_fn:
            seen_fn.add(node.op)
            todo.extend(library[node.op].node_def)
    return ops


def _tf():
    try:
        tf = import_tensorflow_quietly()
    except ImportError:
        raise CheckpointError("reading a SavedModel needs tensorflow: pip install -r requirements-mobile.txt") from None
    return tf


def read_saved_model_source(folder):
    """:class:`TFSource` of a Keras SavedModel folder (``saved_model.pb`` + ``variables/``). Convs are the
    4-D ``layer_with_weights-<i>/kernel`` variables in layer order. CheckpointError for a folder that is
    not a SavedModel, layers with weights other than a 3x3 kernel and a bias (BatchNorm, dense, PReLU),
    or a serving function reaching ops outside :data:`RUNNABLE_TF_OPS` (it is then not run)."""
    pb = os.path.join(folder, "saved_model.pb")
    prefix = os.path.join(folder, "variables", "variables")
    if not os.path.isfile(pb) or not os.path.isfile(prefix + ".index"):
        raise CheckpointError(f"{folder} is not a SavedModel folder (saved_model.pb and variables/variables.index)")
    tf = _tf()
    from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=import-outside-toplevel
    try:
        reader = tf.train.load_checkpoint(prefix)
        shapes = reader.get_variable_to_shape_map()
        saved = saved_model_pb2.SavedModel()
        with open(pb, "rb") as fh:
            saved.ParseFromString(fh.read())
    except Exception as exc:  # pylint: disable=broad-except  # TF raises DataLossError, DecodeError, ...
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{folder} is not a readable SavedModel ({reason})") from None
    layers = {}
    for key in shapes:
        parts = key.split("/")
        if parts[0].startswith("layer_with_weights-") and len(parts) == 4 and parts[2] == ".ATTRIBUTES":
            layers.setdefault(int(parts[0].split("-")[1]), {})[parts[1]] = key
    convs = []
    for i in sorted(layers):
        entry = layers[i]
        kernel = entry.get("kernel")
        if set(entry) - {"kernel", "bias"} or kernel is None or len(shapes[kernel]) != 4 \
                or tuple(shapes[kernel][:2]) != (3, 3):
            raise CheckpointError(f"{folder}: layer {i} holds {sorted(entry)} of shape "
                                  f"{[shapes[k] for k in entry.values()]}, not a 3x3 conv kernel and bias; no model "
                                  "here has such a layer")
        weight = reader.get_tensor(kernel).astype(np.float32).transpose(3, 2, 0, 1)  # HWIO -> OIHW
        bias = reader.get_tensor(entry["bias"]).astype(np.float32) if "bias" in entry \
            else np.zeros(weight.shape[0], np.float32)
        convs.append(SourceConv(f"layer_with_weights-{i}", weight.copy(), bias, None))
    if not convs:
        raise CheckpointError(f"{folder} holds no Keras layer weights (layer_with_weights-<i>)")
    meta = next((m for m in saved.meta_graphs if "serve" in m.meta_info_def.tags), None)
    if meta is None or "serving_default" not in meta.signature_def:
        raise CheckpointError(f"{folder} has no 'serve' graph with a serving_default signature")
    if len(meta.signature_def["serving_default"].inputs) != 1 or len(meta.signature_def["serving_default"].outputs) != 1:
        raise CheckpointError(f"{folder}: its serving_default signature does not take one image and give one")
    unsafe = sorted(_reachable_ops(meta, "serving_default") - RUNNABLE_TF_OPS)
    if unsafe:
        raise CheckpointError(f"{folder}: its serving function uses {', '.join(unsafe[:5])}, not plain arithmetic; "
                              "it is not run (nor imported)")
    return TFSource(folder, "Keras SavedModel", convs, Counter(), _saved_model_runner(tf, folder))


def _saved_model_runner(tf, folder):
    """float32 NCHW -> NCHW through the SavedModel's serving_default (TensorFlow's v1 loader: it restores
    Keras SavedModels whose optimizer slots TF 2's object loader no longer reads)."""
    state = {}

    def run(x):
        if not state:
            graph = tf.Graph()
            with graph.as_default():
                session = tf.compat.v1.Session(graph=graph)
                meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], folder)
            sig = meta.signature_def["serving_default"]
            state.update(session=session, inp=next(iter(sig.inputs.values())).name,
                         out=next(iter(sig.outputs.values())).name)
        y = state["session"].run(state["out"], {state["inp"]: np.ascontiguousarray(x.transpose(0, 2, 3, 1))})
        return np.asarray(y, np.float32).transpose(0, 3, 1, 2).copy()

    return run


def open_tf_source(path):
    """A :class:`TFSource` for a ``.tflite`` file or a SavedModel folder; CheckpointError otherwise."""
    if os.path.isdir(path):
        return read_saved_model_source(path)
    if path.lower().endswith(".tflite"):
        return read_tflite_source(path)
    raise CheckpointError(f"{path}: expected a .tflite file or a SavedModel folder")


def guess_architecture(source):
    """``(model, variant, scale)`` the conv chain of ``source`` is, or CheckpointError naming the chain.

    ABPN: 3 -> C, M x (C -> C), C -> 3s^2, 3s^2 -> 3s^2. EDSR mobile layout: 3 -> F, (2B + 1) x (F -> F),
    F -> 3s^2 (variants f32b5 and f64b5).
    """
    chain = [(c.weight.shape[1], c.weight.shape[0]) for c in source.convs]
    shown = " -> ".join([str(chain[0][0])] + [str(o) for _, o in chain]) if chain else "none"
    if len(chain) >= 4 and chain[0][0] == 3:
        last_in, last_out = chain[-1]
        s2 = last_out // 3
        scale = int(round(s2 ** 0.5))
        if scale >= 2 and scale * scale * 3 == last_out:
            feat = chain[0][1]
            mids = chain[1:-1]
            if last_in == last_out and chain[-2] == (feat, last_out) and all(m == (feat, feat) for m in chain[1:-2]):
                return "abpn", f"M{len(chain) - 3}C{feat}", scale
            if last_in == feat and all(m == (feat, feat) for m in mids) and len(mids) % 2 == 1:
                variant = f"f{feat}b{(len(mids) - 1) // 2}"
                if variant in FAMILIES["edsr"].variants:
                    return "edsr", variant, scale
    raise CheckpointError(f"{source.path}: its convs map channels {shown}, which is neither ABPN "
                          "(3 -> C, M x C, 3s^2, 3s^2) nor EDSR's mobile layout f32b5/f64b5 (3 -> F, 11 x F, 3s^2)")


def source_pixel_range(source, scale, option="auto"):
    """(pixel range, words): ``option`` '1'/'255', or proven on a test image ('auto'); CheckpointError
    when the test image cannot tell."""
    image = probe_image(48, 48, 3)
    scores = pixel_range_scores(source.run, image, scale)
    if option != "auto":
        return float(option), f"pixels in 0..{option} (--pixel_range; test image {describe_scores(scores)})"
    proven = choose_pixel_range(scores)
    if proven is None:
        raise CheckpointError(f"{source.path}: a smooth test image does not tell its pixel range "
                              f"({describe_scores(scores)}); pass --pixel_range 1 or 255")
    return proven, f"pixels in 0..{proven:g} (proven on a test image: {describe_scores(scores)})"


def convert_tf_source(net, source, pixel_range):
    """``{name: array}`` for ``net`` (built by the registry) from ``source`` whose pixels span
    0..``pixel_range``: the family's ``tf_map`` with every bias divided by the range; CheckpointError
    for a family without one or weights that do not fit."""
    name = net.spec.model if net.spec else None
    record = FAMILIES.get(name)
    if record is None or record.tf_map is None:
        supported = sorted(n for n, f in FAMILIES.items() if f.tf_map is not None)
        raise CheckpointError(f"no TensorFlow weight mapping for model '{name}'; supported: {supported}")
    params = record.tf_map(ConvList(source, 1.0 / float(pixel_range)), net)
    check_fit(net, params, source=f"weights of {source.path}")
    return params


def check_images(n_colors, seed=0):
    """Images the equality check runs: the smooth probe and a textured one (uniform noise, blurred
    lightly), float32 1 x C x 40 x 44 in [0, 1]."""
    rng = np.random.default_rng(seed)
    noise = rng.random((1, n_colors, 40, 44))
    textured = (noise + np.roll(noise, 1, axis=2) + np.roll(noise, 1, axis=3)) / 3.0
    return [probe_image(40, 44, n_colors, seed), textured.astype(np.float32)]


def max_import_diff(run_ours, source, pixel_range, images):
    """Largest |ours - source| over ``images`` (float32 NCHW in [0, 1]) in 0..1 units, both clipped to
    [0, 1] (the source's clip at its range and ours)."""
    worst = 0.0
    r = np.float32(pixel_range)
    for image in images:
        theirs = np.clip(source.run(image * r) / r, 0.0, 1.0)
        ours = np.clip(np.asarray(run_ours(image), np.float32), 0.0, 1.0)
        if theirs.shape != ours.shape:
            raise CheckpointError(f"{source.path} turns a {image.shape[2]}x{image.shape[3]} image into "
                                  f"{theirs.shape[2]}x{theirs.shape[3]}, the converted model into "
                                  f"{ours.shape[2]}x{ours.shape[3]}")
        worst = max(worst, float(np.abs(theirs.astype(np.float64) - ours).max()))
    return worst
