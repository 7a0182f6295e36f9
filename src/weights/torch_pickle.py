"""Read PyTorch ``.pth`` checkpoints without torch, without running pickled code, without trusting the file.

A ``torch.save`` file (zip format, PyTorch >= 1.6) holds ``<root>/data.pkl`` and
one raw little-endian buffer per storage under ``<root>/data/<key>``. The pickle
only references tensors through ``persistent_load`` ids and a handful of
rebuild functions. We unpickle with an allow-list: only the names below can be
resolved, each mapped to a local implementation. Anything else (e.g.
``os.system``) raises :class:`UnsafeCheckpointError` instead of executing.

Nothing in the file is trusted:

* zip members are read through a size cap: a member's declared size is checked
  against its compressed size (at most :data:`MAX_INFLATE_RATIO` times, for
  members above :data:`RATIO_FREE_BYTES`), the bytes actually inflated against
  the declared size, and all members read together against the archive's real
  size on disk, so a zip bomb or a lying header is refused before it is inflated;
* unpickling builds only lightweight references (storage key + dtype, and
  offset/size/stride); every tensor is then checked, with its name, before any
  byte is viewed: the storage's byte size is a multiple of the dtype size and
  matches the element count the pickle declares, size/stride/offset are
  non-negative integers, the view's last element
  ``offset + sum((size - 1) * stride)`` lies inside the storage, and the tensor
  has no more elements than its storage holds (so its copy is never larger than
  bytes really in the file);
* a malformed or truncated pickle or zip is one :class:`TorchFileError` line.

Several tensors may legitimately view one storage (slices, tied weights); each
is checked and copied on its own.
"""
import collections
import io
import os
import pickle
import struct
import zipfile
import zlib

import numpy as np
from src.errors import UserError


class TorchFileError(UserError):
    """A ``.pth`` file is malformed, truncated or crafted; the message names the member or tensor."""


class UnsafeCheckpointError(TorchFileError):
    """The checkpoint references code outside the allow-list."""


#: A member may inflate to at most this many times its compressed size (torch.save stores
#: members uncompressed, ratio 1; re-zipped float weights compress by well under 2x).
MAX_INFLATE_RATIO = 100
#: Members up to this size (bytes) are exempt from the ratio check (small zero buffers compress well).
RATIO_FREE_BYTES = 1 << 20
#: Upper bound for ``data.pkl`` (bytes); the pickle of a state dict is a few KiB per hundred tensors.
MAX_PICKLE_BYTES = 64 << 20
#: All members read from one archive together may inflate to at most this many times the file size.
MAX_TOTAL_RATIO = MAX_INFLATE_RATIO
_CHUNK = 1 << 20
#: No real tensor has a dimension, stride or offset this large; refusing them early keeps numpy away from them.
_MAX_INDEX = 1 << 48

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
_UNSUPPORTED_STORAGES = ("BFloat16Storage", "ComplexFloatStorage", "ComplexDoubleStorage", "QInt8Storage",
                         "QUInt8Storage", "QInt32Storage", "QUInt4x2Storage", "QUInt2x4Storage")

#: The wrappers ``auto`` looks for, in this order (BasicSR files: ``params_ema`` then ``params``).
WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model")
#: Values accepted for ``key``.
KEY_CHOICES = ("auto",) + WRAPPER_KEYS


class _StorageType:
    def __init__(self, name):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _StorageRef:
    """A storage named by the pickle: archive key, dtype and the element count the pickle declares."""

    def __init__(self, key, storage_type, declared_numel):
        self.key, self.storage_type, self.declared_numel = key, storage_type, declared_numel


class _TensorRef:
    """What a ``_rebuild_tensor`` call asked for; checked and copied only by :func:`_materialise`."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _rebuild_tensor(storage, offset, size, stride, *_unused):
    return _TensorRef(storage, offset, size, stride)


def _rebuild_parameter(data, *_unused):
    return data


def _ordered_dict(*args):
    return collections.OrderedDict(*args)


_ALLOWED = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.nn.parameter", "Parameter"): _rebuild_parameter,
}


class _Archive:
    """Bounded reads of zip members: declared vs compressed vs real sizes, and a budget for the whole file."""

    def __init__(self, path):
        self.path = path
        self.file_size = os.path.getsize(path)
        self.budget = self.file_size * MAX_TOTAL_RATIO + RATIO_FREE_BYTES
        try:
            self.zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
            raise TorchFileError(f"{path}: damaged zip archive ({_short(exc)})") from None

    def close(self):
        self.zip.close()

    def names(self):
        return self.zip.namelist()

    def read(self, name, what, limit=None):
        """The bytes of member ``name`` (``what`` names it in errors), refusing anything a header lies about."""
        try:
            info = self.zip.getinfo(name)
        except KeyError:
            raise TorchFileError(f"{self.path}: {what} refers to member '{name}', which the archive does not hold; "
                                 "the file is truncated or damaged") from None
        declared, packed = info.file_size, info.compress_size
        if info.flag_bits & 0x1:
            raise TorchFileError(f"{self.path}: member '{name}' is encrypted; torch.save never writes that")
        if limit is not None and declared > limit:
            raise TorchFileError(f"{self.path}: {what} ('{name}') declares {declared} bytes, over the "
                                 f"{limit}-byte limit for it")
        if info.compress_type == zipfile.ZIP_STORED and declared != packed:
            raise TorchFileError(f"{self.path}: member '{name}' is stored uncompressed but declares {declared} "
                                 f"bytes for {packed} bytes in the file; the archive is damaged or crafted")
        if declared > RATIO_FREE_BYTES and declared > MAX_INFLATE_RATIO * max(packed, 1):
            raise TorchFileError(
                f"{self.path}: member '{name}' would inflate {packed} bytes to {declared} "
                f"(ratio {declared / max(packed, 1):.0f} > {MAX_INFLATE_RATIO}); refusing a possible zip bomb")
        if declared > self.budget:
            raise TorchFileError(
                f"{self.path}: the members read add up to more than {MAX_TOTAL_RATIO}x the file's "
                f"{self.file_size} bytes (at '{name}'); refusing overlapping or inflated members")
        self.budget -= declared
        buf = bytearray()
        try:
            with self.zip.open(info) as fh:
                while True:
                    chunk = fh.read(min(_CHUNK, declared + 1 - len(buf)))
                    if not chunk:
                        break
                    buf += chunk
                    if len(buf) > declared:
                        raise TorchFileError(f"{self.path}: member '{name}' holds more than the {declared} "
                                             "bytes its header declares; the archive is damaged or crafted")
        except TorchFileError:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, ValueError,
                RuntimeError) as exc:
            raise TorchFileError(f"{self.path}: cannot read member '{name}' ({_short(exc)}); "
                                 "the file is truncated or damaged") from None
        if len(buf) != declared:
            raise TorchFileError(f"{self.path}: member '{name}' holds {len(buf)} bytes but declares {declared}; "
                                 "the file is truncated or damaged")
        return buf


def _short(exc):
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, fileobj):
        super().__init__(fileobj)
        self._storages = {}

    def find_class(self, module, name):
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch" and name in _UNSUPPORTED_STORAGES:
            raise TorchFileError(f"tensors of type torch.{name} are not supported; convert the state dict to "
                                 "float32 (sd = {k: v.float() for k, v in sd.items()}) and save it again")
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise UnsafeCheckpointError(
            f"checkpoint references '{module}.{name}', which is not a tensor/state-dict type; "
            "refusing to run it (re-save the file as a plain state_dict)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise UnsafeCheckpointError(f"unsupported persistent id {str(pid)[:80]} in checkpoint")
        storage_type, key, numel = pid[1], pid[2], pid[4]
        if not isinstance(storage_type, _StorageType):
            raise TorchFileError(f"storage '{str(key)[:40]}' has no storage type (found {type(storage_type).__name__})")
        if not (isinstance(key, str) or type(key) is int) or not str(key) or len(str(key)) > 64:  # noqa: E721
            raise TorchFileError(f"malformed storage key {str(key)[:40]!r} in checkpoint")
        if type(numel) is not int or numel < 0:  # noqa: E721  (bool is not a count)
            raise TorchFileError(f"storage '{key}' declares {str(numel)[:40]} elements; expected a count >= 0")
        ident = (str(key), storage_type.name)
        if ident not in self._storages:
            self._storages[ident] = _StorageRef(str(key), storage_type, numel)
        return self._storages[ident]


def _unpickle(raw, path):
    try:
        return _SafeUnpickler(io.BytesIO(bytes(raw))).load()
    except TorchFileError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            struct.error, OverflowError, MemoryError, RecursionError, UnicodeDecodeError) as exc:
        raise TorchFileError(f"{path}: malformed or truncated pickle in data.pkl ({type(exc).__name__}: "
                             f"{_short(exc)}); the file is damaged or was not written by torch.save") from None


class _StorageBytes:
    """Reads each storage member once and views it as arrays of the dtypes asked for."""

    def __init__(self, archive, root, big_endian):
        self.archive, self.root, self.big_endian = archive, root, big_endian
        self.raw = {}

    def array(self, ref, where):
        if ref.key not in self.raw:
            self.raw[ref.key] = self.archive.read(f"{self.root}/data/{ref.key}", f"{where} (storage '{ref.key}')")
        raw = self.raw[ref.key]
        dtype = ref.storage_type.dtype
        if len(raw) % dtype.itemsize:
            raise TorchFileError(f"{where}: storage '{ref.key}' holds {len(raw)} bytes, not a multiple of the "
                                 f"{dtype.itemsize}-byte {dtype.name}; the file is damaged or crafted")
        real = len(raw) // dtype.itemsize
        if real != ref.declared_numel:
            raise TorchFileError(f"{where}: storage '{ref.key}' declares {ref.declared_numel} {dtype.name} values "
                                 f"but holds {real} ({len(raw)} bytes); the file is damaged or crafted")
        return np.frombuffer(raw, dtype=dtype.newbyteorder(">") if self.big_endian else dtype)


def _int_tuple(value, what, where):
    if not isinstance(value, (tuple, list)) or len(value) > 32:
        raise TorchFileError(f"{where}: {what} is {str(value)[:60]}, not a tuple of at most 32 integers")
    for v in value:
        if type(v) is not int or v < 0 or v >= _MAX_INDEX:  # noqa: E721  (bool is not a size)
            raise TorchFileError(f"{where}: {what} {tuple(value)} holds {str(v)[:40]}; sizes and strides must be "
                                 f"integers in [0, 2^48)")
    return tuple(value)


def _materialise(name, ref, storages):
    """Check ``ref`` against its storage's real bytes, then return a contiguous copy (native byte order)."""
    where = f"tensor '{name}'"
    if not isinstance(ref.storage, _StorageRef):
        raise TorchFileError(f"{where}: its data is a {type(ref.storage).__name__}, not a storage")
    size = _int_tuple(ref.size, "size", where)
    stride = _int_tuple(ref.stride, "stride", where)
    if len(stride) != len(size):
        raise TorchFileError(f"{where}: size {size} has {len(size)} dimensions but stride {stride} has {len(stride)}")
    offset = ref.offset
    if type(offset) is not int or offset < 0 or offset >= _MAX_INDEX:  # noqa: E721
        raise TorchFileError(f"{where}: storage offset {str(offset)[:40]} is not an integer >= 0")
    data = storages.array(ref.storage, where)
    dtype = ref.storage.storage_type.dtype
    numel = 1
    for dim in size:
        numel *= dim
    if numel == 0:
        return np.zeros(size, dtype)
    last = offset + sum((dim - 1) * step for dim, step in zip(size, stride))
    if last >= data.size:
        raise TorchFileError(
            f"{where}: size {size}, stride {stride} at offset {offset} reads element {last} but its storage "
            f"'{ref.storage.key}' holds {data.size} {dtype.name} values; the file is damaged or crafted")
    if numel > data.size - offset:
        raise TorchFileError(
            f"{where}: size {size} has {numel} elements but its storage '{ref.storage.key}' holds {data.size - offset} "
            f"from offset {offset} (an expanded or self-overlapping view); save tensor.contiguous() instead")
    view = np.lib.stride_tricks.as_strided(data[offset:], shape=size,
                                           strides=tuple(s * dtype.itemsize for s in stride), writeable=False)
    return np.array(view, dtype=dtype, order="C")


def _select_state_dict(obj, key, path):
    """``(state dict, notes)`` for the wrapper ``key`` (``auto``: the first of WRAPPER_KEYS present)."""
    if key not in KEY_CHOICES:
        raise TorchFileError(f"key must be one of {', '.join(KEY_CHOICES)}, not '{key}'")
    if not isinstance(obj, dict):
        raise TorchFileError(f"{path}: does not contain a state dict (found {type(obj).__name__})")
    present = [w for w in WRAPPER_KEYS if isinstance(obj.get(w), dict)]
    if key == "auto":
        if not present:
            return obj, []
        key = present[0]
        if key == "params_ema" and "params" in present:
            note = ("took 'params_ema' (the EMA weights BasicSR evaluates); the file also holds 'params' "
                    "(--key params converts those)")
        else:
            note = f"took the state dict under '{key}'"
        return obj[key], [note]
    if key not in present:
        holds = f"state dicts under {', '.join(repr(w) for w in present)}" if present else "a plain state dict"
        raise TorchFileError(f"{path}: has no '{key}' state dict (it holds {holds}); "
                             f"pass --key {present[0] if present else 'auto'}")
    return obj[key], [f"took the state dict under '{key}'" + (
        f" (the file also holds {', '.join(repr(w) for w in present if w != key)})" if len(present) > 1 else "")]


def _strip_module_prefix(entries):
    """Drop DataParallel's ``module.`` from every name when all tensor names carry it; returns (entries, note)."""
    names = list(entries)
    stripped = 0
    while names and all(n.startswith("module.") for n in names):
        names = [n[len("module."):] for n in names]
        stripped += 1
    if not stripped:
        return entries, None
    renamed = collections.OrderedDict(zip(names, entries.values()))
    prefix = "module." * stripped
    return renamed, f"stripped '{prefix}' prefix from {len(names)} names (a DataParallel/DistributedDataParallel save)"


TorchWeights = collections.namedtuple("TorchWeights", "state_dict notes")


def load_torch_weights(path, key="auto"):
    """Read a ``torch.save`` zip file safely; return ``TorchWeights(state_dict, notes)``.

    ``state_dict``: ``{name: np.ndarray}`` (C-contiguous, native byte order; 0-d buffers such as
    BatchNorm's ``num_batches_tracked`` are left out, as are non-tensor entries). ``notes``: lines saying
    which wrapper was taken (``params``/``params_ema``/``state_dict``/``model``) and whether a
    DataParallel ``module.`` prefix was stripped.

    ``key``: ``auto`` (``params_ema`` before ``params``, then ``state_dict``, ``model``, else the
    top level) or one of :data:`WRAPPER_KEYS` to insist on that entry.

    Raises :class:`TorchFileError` (a ValueError) with one line naming the member or tensor for a
    file that is not a torch zip, is truncated, lies about sizes, or describes a tensor outside its
    storage; :class:`UnsafeCheckpointError` for a pickle that references code.
    """
    path = str(path)
    if not zipfile.is_zipfile(path):
        raise TorchFileError(
            f"{path}: not a zip-format PyTorch checkpoint (saved by torch<1.6 or not a .pth); "
            "re-save it with torch.save(state_dict, path) from PyTorch >= 1.6")
    archive = _Archive(path)
    try:
        pkl_names = [n for n in archive.names() if n.endswith("/data.pkl")]
        if len(pkl_names) != 1:
            raise TorchFileError(f"{path}: expected one data.pkl in the archive, found {len(pkl_names)}")
        root = pkl_names[0][: -len("/data.pkl")]
        obj = _unpickle(archive.read(pkl_names[0], "data.pkl", MAX_PICKLE_BYTES), path)
        big_endian = False
        if f"{root}/byteorder" in archive.names():
            order = bytes(archive.read(f"{root}/byteorder", "byteorder", 16)).decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise TorchFileError(f"{path}: byteorder member says '{order[:16]}', expected little or big")
            big_endian = order == "big"
        state, notes = _select_state_dict(obj, key, path)
        tensors = collections.OrderedDict()
        for name, value in state.items():
            if isinstance(value, _TensorRef):
                if not isinstance(name, str):
                    raise TorchFileError(f"{path}: tensor name {repr(name)[:40]} is not a string")
                tensors[name] = value
        if not tensors:
            keys = ", ".join(repr(k)[:30] for k in list(state)[:6])
            raise TorchFileError(f"{path}: holds no tensors at the top level (entries: {keys or 'none'}); "
                                 "is it a state dict saved with torch.save(model.state_dict(), path)?")
        tensors, note = _strip_module_prefix(tensors)
        if note:
            notes.append(note)
        storages = _StorageBytes(archive, root, big_endian)
        out = collections.OrderedDict()
        for name, ref in tensors.items():
            array = _materialise(name, ref, storages)
            if array.ndim:
                out[name] = array
        return TorchWeights(dict(out), notes)
    finally:
        archive.close()


def load_torch_state_dict(path, key="auto"):
    """``{name: np.ndarray}`` from a PyTorch checkpoint file (see :func:`load_torch_weights`)."""
    return load_torch_weights(path, key).state_dict
