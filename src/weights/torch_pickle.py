"""Read PyTorch ``.pth`` checkpoints without torch and without running pickled code.

A ``torch.save`` file (zip format, PyTorch >= 1.6) holds ``<root>/data.pkl`` and
one raw little-endian buffer per storage under ``<root>/data/<key>``. The pickle
only references tensors through ``persistent_load`` ids and a handful of
rebuild functions. We unpickle with an allow-list: only the names below can be
resolved, each mapped to a local numpy implementation. Anything else (e.g.
``os.system``) raises ``UnsafeCheckpointError`` instead of executing.
"""
import collections
import pickle
import zipfile

import numpy as np


class UnsafeCheckpointError(ValueError):
    """The checkpoint references code outside the allow-list."""


_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name):
        self.dtype = _STORAGE_DTYPES[name]


def _rebuild_tensor(storage, offset, size, stride, *_unused):
    """Build a numpy array viewing ``storage`` with torch's size/stride (in elements)."""
    if len(size) == 0:
        return storage[offset].copy()
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride))
    return np.ascontiguousarray(view)


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


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, fileobj, archive, root):
        super().__init__(fileobj)
        self._archive = archive
        self._root = root
        self._storages = {}

    def find_class(self, module, name):
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise UnsafeCheckpointError(
            f"checkpoint references '{module}.{name}', which is not a tensor/state-dict type; "
            "refusing to run it (re-save the file as a plain state_dict)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise UnsafeCheckpointError(f"unsupported persistent id {pid!r} in checkpoint")
        storage_type, key = pid[1], str(pid[2])
        if key not in self._storages:
            raw = self._archive.read(f"{self._root}/data/{key}")
            self._storages[key] = np.frombuffer(raw, dtype=storage_type.dtype)
        return self._storages[key]


def load_torch_state_dict(path):
    """Return ``{name: np.ndarray}`` from a PyTorch checkpoint file.

    Accepts a plain state dict or the common wrappers ``{"params": sd}``,
    ``{"params_ema": sd}``, ``{"state_dict": sd}``, ``{"model": sd}``.
    """
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path}: not a zip-format PyTorch checkpoint (saved by torch<1.6 or not a .pth); "
            "re-save it with torch.save(state_dict, path) from PyTorch >= 1.6")
    with zipfile.ZipFile(path) as archive:
        pkl_names = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if len(pkl_names) != 1:
            raise ValueError(f"{path}: expected one data.pkl in the archive, found {len(pkl_names)}")
        root = pkl_names[0][: -len("/data.pkl")]
        with archive.open(pkl_names[0]) as fh:
            obj = _SafeUnpickler(fh, archive, root).load()
    for wrapper in ("params_ema", "params", "state_dict", "model"):
        if isinstance(obj, dict) and wrapper in obj and isinstance(obj[wrapper], dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: does not contain a state dict (found {type(obj).__name__})")
    return {k: np.asarray(v) for k, v in obj.items() if isinstance(v, np.ndarray)}
