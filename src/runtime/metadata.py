"""What an exported file needs to be tiled like its checkpoint, stored inside the file.

An exported graph alone tells its input channel count and scale only by running
it, and nothing about how far each output pixel looks into the LR image. The
runners (:mod:`src.runtime.runners`) need that receptive radius for the tile
overlap: with a smaller overlap tiles differ from the untiled output (EDSR-
baseline looks 36 LR pixels out; the old assumption of 16 changed 3 pixels).

Storage, as string key/value pairs under the ``sr.`` prefix:

- ONNX: ``ModelProto.metadata_props`` (onnxruntime shows them as
  ``get_modelmeta().custom_metadata_map``);
- MindIR: ``ModelProto.user_info`` of the MindIR protobuf, written by
  ``mindspore.export(..., custom_func=...)`` and read back by parsing the file
  (``mindspore.load`` does not expose it). Inside the file, so it cannot be
  separated from the graph the way a side file can.
- TFLite: one JSON object of the same ``sr.*`` map in a buffer that the
  flatbuffer's ``Model.metadata`` list names ``sr_metadata``
  (:func:`attach_tflite_metadata`, :func:`read_tflite_metadata`; LiteRT keeps
  such named buffers and ignores names it does not know).

| key                  | value (string)                                          |
|----------------------|---------------------------------------------------------|
| sr.metadata_version  | ``1``                                                   |
| sr.model, sr.variant | family and variant, e.g. ``edsr``, ``baseline``         |
| sr.scale             | upscaling factor, e.g. ``2``                            |
| sr.n_colors          | input/output channels: ``3`` (RGB) or ``1`` (BT.601 Y)  |
| sr.receptive_radius  | LR pixels each output pixel depends on, per side        |
| sr.peak_channels     | widest activation, channels per LR pixel (tile memory)  |
| sr.kind              | ``float``, ``fake-quant`` or ``int8 QDQ``               |
| sr.input             | layout and range of the input, for people reading it    |
| sr.options           | JSON of the family options (``act``, ...)               |
"""
import json
from src.errors import UserError
from src.models.base import SRNet

PREFIX = "sr."
VERSION = 1
# Bounds a valid value stays within; a file outside them is refused rather than trusted.
_INT_KEYS = {"scale": range(2, 17), "n_colors": (1, 3), "receptive_radius": range(0, 4097),
             "peak_channels": range(1, (1 << 20) + 1)}
REQUIRED = ("scale", "n_colors", "receptive_radius")


def default_peak_channels(scale):
    """Channels per LR pixel assumed for tile sizes when a model (or file) does not say: 64 x scale^2."""
    return 64 * int(scale) * int(scale)


class ExportedModelError(UserError):
    """An exported model file (.onnx / .ort / .mindir / .tflite) cannot be read or carries inconsistent metadata."""


class MissingRuntimeError(UserError):
    """A package needed to read or run a file format is not installed; the message names the requirements file."""


def missing_runtime(what, package, requirements="requirements-mobile.txt"):
    """The one-line error for ``what`` needing ``package``."""
    return MissingRuntimeError(f"{what} needs {package}, which is not installed: pip install -r {requirements}")


def unreadable(path, fmt, reason):
    """The one-line error for a file the runtime cannot load."""
    return ExportedModelError(f"{path} is not a readable {fmt} model ({str(reason).rstrip('. ')}); "
                              "re-export it with export.py")


def export_metadata(net, kind="float"):
    """``{key: str}`` describing ``net`` (a deploy-form :class:`~src.models.base.SRNet`, float or
    fake-quant) for tiling: its declared ``scale``, ``n_colors``, ``receptive_radius``, ``peak_channels``
    (None: :func:`default_peak_channels`) and ``spec``.

    Raises ValueError for a network that is not an ``SRNet``: only those declare these values, and no
    file may claim a value nobody measured.
    """
    if not isinstance(net, SRNet):
        raise ValueError(f"{type(net).__name__} is not an SRNet and does not declare {', '.join(REQUIRED)}; "
                         "every exported model must (see src/models/base.py)")
    n_colors = int(net.n_colors)
    scale = int(net.scale)
    meta = {
        "metadata_version": str(VERSION),
        "model": net.spec.model if net.spec else type(net).__name__,
        "variant": net.spec.variant if net.spec else "",
        "scale": str(scale),
        "n_colors": str(n_colors),
        "receptive_radius": str(int(net.receptive_radius)),
        "peak_channels": str(int(net.peak_channels or default_peak_channels(scale))),
        "kind": str(kind),
        "input": f"1 x {n_colors} x H x W float32 in [0, 1], "
                 + ("RGB" if n_colors == 3 else "Y of BT.601 YCbCr" if n_colors == 1 else f"{n_colors} channels"),
        "options": json.dumps(net.spec.options if net.spec else {}, sort_keys=True),
    }
    return {PREFIX + k: v for k, v in meta.items()}


def attach_onnx_metadata(model, meta):
    """Write ``meta`` into ``model.metadata_props`` (an onnx ModelProto, changed in place), replacing
    earlier ``sr.*`` entries and keeping any others; returns ``model``."""
    keep = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    for key, value in keep + sorted(meta.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model


def mindir_user_info(meta):
    """A ``custom_func`` for ``mindspore.export`` that stores ``meta`` in the MindIR ``user_info``."""
    def _write(mindir_model):
        for key, value in meta.items():
            mindir_model.user_info[key] = value
    return _write


TFLITE_METADATA_NAME = "sr_metadata"
TFLITE_IDENTIFIER = b"TFL3"  # the TFLite schema's file_identifier (bytes 4..8 of every .tflite file)


def _tflite_schema():
    """(schema module, flatbuffers) from ai-edge-litert; MissingRuntimeError names requirements-mobile.txt."""
    try:
        import flatbuffers  # pylint: disable=import-outside-toplevel
        from ai_edge_litert import schema_py_generated  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise missing_runtime("reading or writing .tflite files", "ai-edge-litert") from None
    return schema_py_generated, flatbuffers


def _unpack_tflite(data, path):
    """The ``ModelT`` (flatbuffer object API) of TFLite bytes; ExportedModelError when they are not one."""
    schema, _ = _tflite_schema()
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise unreadable(path, "TFLite", "the file is empty" if not data else "no TFL3 flatbuffer identifier")
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception:  # flatbuffers raises struct.error, IndexError, ... on damaged offsets
        raise unreadable(path, "TFLite", "its flatbuffer is damaged or truncated") from None
    if not model.subgraphs or not model.buffers:
        raise unreadable(path, "TFLite", "no subgraph in it")
    return model


def attach_tflite_metadata(tflite_bytes, meta):
    """TFLite flatbuffer bytes with ``meta`` (``{key: str}``, as :func:`export_metadata`) stored inside.

    The map is written as one UTF-8 JSON object in a new buffer, named
    ``sr_metadata`` in ``Model.metadata``; an earlier ``sr_metadata`` entry is
    replaced (its buffer emptied), other metadata (e.g. the converter's
    ``min_runtime_version``) is kept. Tensors, ops and weights are repacked
    unchanged. Raises ExportedModelError for bytes that are not a TFLite model,
    MissingRuntimeError (a ValueError) without ai-edge-litert.
    """
    schema, flatbuffers = _tflite_schema()
    import numpy as np  # pylint: disable=import-outside-toplevel
    model = _unpack_tflite(bytes(tflite_bytes), "the TFLite model")
    entries = []
    for entry in model.metadata or []:
        name = entry.name.decode() if isinstance(entry.name, bytes) else entry.name
        if name == TFLITE_METADATA_NAME:
            model.buffers[entry.buffer].data = None  # orphaned, left empty (buffer indices must not shift)
        else:
            entries.append(entry)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(dict(meta), sort_keys=True).encode("utf-8"), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = TFLITE_METADATA_NAME, len(model.buffers) - 1
    model.metadata = entries + [entry]
    builder = flatbuffers.Builder(len(tflite_bytes) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return bytes(builder.Output())


def read_tflite_metadata(path):
    """The ``{key: str}`` map :func:`attach_tflite_metadata` stored in the .tflite file ``path``.

    Returns ``{}`` for a TFLite file without it (give the result to
    :func:`parse_metadata`, which treats that as a file exported before metadata
    existed). Raises ExportedModelError for a file that is not a TFLite model or
    whose ``sr_metadata`` is not a JSON object of strings, MissingRuntimeError
    (a ValueError) without ai-edge-litert.
    """
    with open(path, "rb") as f:
        data = f.read()
    model = _unpack_tflite(data, path)
    for entry in model.metadata or []:
        name = entry.name.decode() if isinstance(entry.name, bytes) else entry.name
        if name != TFLITE_METADATA_NAME:
            continue
        raw = model.buffers[entry.buffer].data if entry.buffer < len(model.buffers) else None
        try:
            meta = json.loads(bytes(bytearray(raw)).decode("utf-8")) if raw is not None else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            meta = None
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise ExportedModelError(f"{path} has a damaged {TFLITE_METADATA_NAME} entry (not a JSON object of "
                                     "strings); re-export it with export.py")
        return meta
    return {}


def read_mindir_proto(path):
    """The MindIR ``ModelProto`` of ``path``; ExportedModelError when it is not a MindIR graph.

    Parsing first (before ``mindspore.load``) refuses random bytes, truncated files
    and other formats with one line instead of MindSpore's C++ error log.
    """
    from google.protobuf.message import DecodeError  # pylint: disable=import-outside-toplevel
    from mindspore.train.mind_ir_pb2 import ModelProto  # pylint: disable=import-outside-toplevel
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise unreadable(path, "MindIR", "the file is empty")
    proto = ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise unreadable(path, "MindIR", f"protobuf parsing failed: {str(exc)[:120] or type(exc).__name__}") from None
    # MindSpore's loader needs the producer, its version (model_version) and ir_version besides a graph;
    # an ONNX file parses as a MindIR ModelProto too, but with its versions in other fields.
    if (not proto.HasField("graph") or not proto.graph.node or not proto.producer_name or not proto.model_version
            or not proto.ir_version):
        raise unreadable(path, "MindIR", "no MindSpore graph in it")
    return proto


def parse_metadata(raw, path):
    """Typed metadata from a ``{key: str}`` map (the file's ONNX metadata_props, MindIR user_info or TFLite
    ``sr_metadata``).

    Returns None when the map has no ``sr.*`` entries (a file exported before
    metadata was written), else a dict with int ``scale``, ``n_colors``,
    ``receptive_radius``, ``peak_channels`` (None when absent) and str ``model``,
    ``variant``, ``kind``. Raises ExportedModelError naming the key when a
    required entry is missing or a value is not an integer within its bounds.
    """
    found = {k[len(PREFIX):]: str(v) for k, v in dict(raw or {}).items() if str(k).startswith(PREFIX)}
    if not found:
        return None
    info = {"model": found.get("model", ""), "variant": found.get("variant", ""), "kind": found.get("kind", ""),
            "metadata_version": found.get("metadata_version", "")}
    for key, allowed in _INT_KEYS.items():
        text = found.get(key)
        if text is None:
            if key in REQUIRED:
                raise ExportedModelError(f"{path} has SR metadata without {PREFIX}{key}; re-export it with export.py")
            info[key] = None
            continue
        try:
            value = int(text.strip())
        except ValueError:
            value = None
        if value is None or value not in allowed:
            expected = (f"{allowed.start}..{allowed.stop - 1}" if isinstance(allowed, range)
                        else " or ".join(map(str, allowed)))
            raise ExportedModelError(f"{path} has a bad {PREFIX}{key} '{text[:40]}' in its metadata (expected "
                                     f"{expected}); re-export it with export.py")
        info[key] = value
    return info
