"""Test helpers: write PyTorch zip-format state dicts without torch, and numpy
reference forwards of the published PyTorch networks (CRD PixelShuffle order)."""
import collections
import io
import pickle
import sys
import threading
import types
import zipfile

import numpy as np

_DTYPE_STORAGE = {np.dtype(np.float32): "FloatStorage", np.dtype(np.int64): "LongStorage",
                  np.dtype(np.float64): "DoubleStorage", np.dtype(np.float16): "HalfStorage",
                  np.dtype(np.int32): "IntStorage", np.dtype(np.uint8): "ByteStorage"}
_MODULES_LOCK = threading.Lock()
_STORAGE_NAMES = sorted(set(_DTYPE_STORAGE.values()) | {"BFloat16Storage"})


class RawTensor:
    """A tensor entry written verbatim (may be hostile): storage ``key``, ``shape``, ``stride``, ``offset``.

    ``stride`` None means contiguous; ``storage`` is the torch storage class name; ``numel`` the
    element count written in the storage's persistent id (None: the real count of its blob).
    """

    def __init__(self, key, shape, stride=None, offset=0, storage="FloatStorage", numel=None):
        self.key, self.shape, self.offset, self.storage, self.numel = str(key), tuple(shape), offset, storage, numel
        if stride is None:
            stride, acc = [], 1
            for dim in reversed(self.shape):
                stride.insert(0, acc)
                acc *= dim
        self.stride = tuple(stride)


def _itemsize(storage_name):
    inv = {v: k for k, v in _DTYPE_STORAGE.items()}
    return inv[storage_name].itemsize if storage_name in inv else 2


def pickle_torch_tree(obj, blobs):
    """Pickle bytes (protocol 2) of ``obj`` (dicts/lists of RawTensor) as ``torch.save`` writes data.pkl."""
    fake_torch = types.ModuleType("torch")
    fake_utils = types.ModuleType("torch._utils")
    storage_types = {}
    for name in _STORAGE_NAMES:
        cls = type(name, (), {"__module__": "torch"})
        setattr(fake_torch, name, cls)
        storage_types[name] = cls

    def _rebuild_tensor_v2(*args):  # never called while saving
        raise AssertionError(args)
    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    fake_utils._rebuild_tensor_v2 = _rebuild_tensor_v2

    class _Storage:
        def __init__(self, tensor):
            self.tensor = tensor

    class _Tensor:
        def __init__(self, raw):
            self.raw = raw

        def __reduce__(self):
            r = self.raw
            return (_rebuild_tensor_v2, (_Storage(r), r.offset, r.shape, r.stride, False, collections.OrderedDict()))

    def wrap(o):
        if isinstance(o, RawTensor):
            return _Tensor(o)
        if isinstance(o, dict):
            return collections.OrderedDict((k, wrap(v)) for k, v in o.items())
        if isinstance(o, (list, tuple)):
            return type(o)(wrap(v) for v in o)
        return o

    class _Pickler(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, _Storage):
                r = o.tensor
                numel = r.numel if r.numel is not None else len(blobs.get(r.key, b"")) // _itemsize(r.storage)
                return ("storage", storage_types[r.storage], r.key, "cpu", numel)
            return None

    with _MODULES_LOCK:  # the fake modules stand in sys.modules while pickling (threads: the sweep's --jobs)
        saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
        sys.modules["torch"], sys.modules["torch._utils"] = fake_torch, fake_utils
        try:
            buf = io.BytesIO()
            _Pickler(buf, protocol=2).dump(wrap(obj))
        finally:
            for k, v in saved.items():
                if v is None:
                    sys.modules.pop(k, None)
                else:
                    sys.modules[k] = v
    return buf.getvalue()


def write_torch_zip(path, obj, blobs, compression=zipfile.ZIP_STORED, data_pkl=None, root="archive"):
    """Write a torch.save-style zip: ``obj`` pickled (or ``data_pkl`` bytes as given) and ``blobs`` {key: bytes};
    returns ``path``."""
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        zf.writestr(f"{root}/data.pkl", data_pkl if data_pkl is not None else pickle_torch_tree(obj, blobs))
        zf.writestr(f"{root}/version", "3\n")
        for key, raw in blobs.items():
            zf.writestr(f"{root}/data/{key}", raw)
    return path


def save_torch_format(state_dict, path, compression=zipfile.ZIP_STORED):
    """Write ``{name: np.ndarray}`` the way ``torch.save`` (zip, protocol 2) does.

    Values may also be dicts of arrays (BasicSR's ``{"params": sd, "params_ema": sd}``); each array gets
    its own storage.
    """
    blobs = {}

    def convert(o):
        if isinstance(o, dict):
            return collections.OrderedDict((k, convert(v)) for k, v in o.items())
        if isinstance(o, np.ndarray):
            arr = np.ascontiguousarray(o)
            key = str(len(blobs))
            blobs[key] = arr.tobytes()
            return RawTensor(key, arr.shape, storage=_DTYPE_STORAGE[arr.dtype])
        return o

    write_torch_zip(path, convert(state_dict), blobs, compression=compression)


# ---------------- numpy references of the PyTorch forwards ----------------

def conv2d(x, w, b=None):
    """x: (C,H,W), w: (O,C,k,k), zero 'same' padding, cross-correlation (as torch)."""
    k = w.shape[2]
    p = k // 2
    xp = np.pad(x, ((0, 0), (p, p), (p, p)))
    h, wd = x.shape[1:]
    cols = np.stack([xp[:, i:i + h, j:j + wd] for i in range(k) for j in range(k)], axis=1)  # C,k*k,H,W
    out = np.einsum("ckhw,ock->ohw", cols, w.reshape(w.shape[0], w.shape[1], k * k).astype(np.float64))
    return out + (b[:, None, None] if b is not None else 0)


def relu(x):
    return np.maximum(x, 0)


def prelu(x, a):
    return np.where(x >= 0, x, a[:, None, None] * x)


def pixel_shuffle_crd(x, s):
    c = x.shape[0] // (s * s)
    h, w = x.shape[1:]
    return x.reshape(c, s, s, h, w).transpose(0, 3, 1, 4, 2).reshape(c, h * s, w * s)


def repeat_interleave(x, n):
    return np.repeat(x, n, axis=0)


def abpn_forward(sd, x, scale, num_block):
    y = relu(conv2d(x, sd["backbone.0.weight"], sd["backbone.0.bias"]))
    for i in range(num_block):
        y = relu(conv2d(y, sd[f"backbone.{i + 2}.0.weight"], sd[f"backbone.{i + 2}.0.bias"]))
    k = num_block + 2
    y = relu(conv2d(y, sd[f"backbone.{k}.weight"], sd[f"backbone.{k}.bias"]))
    y = conv2d(y, sd[f"backbone.{k + 2}.weight"], sd[f"backbone.{k + 2}.bias"])
    return np.clip(pixel_shuffle_crd(y + repeat_interleave(x, scale * scale), scale), 0, 1)


def etds_plain_forward(sd, x, scale, num_block):
    y = relu(conv2d(x, sd["conv_first.weight"], sd["conv_first.bias"]))
    for i in range(num_block):
        y = relu(conv2d(y, sd[f"backbone_convs.{i}.weight"], sd[f"backbone_convs.{i}.bias"]))
    y = relu(conv2d(y, sd["conv_last.weight"], sd["conv_last.bias"]))
    y = relu(conv2d(y, sd["conv_clip.weight"], sd["conv_clip.bias"]))
    return pixel_shuffle_crd(y[: 3 * scale * scale], scale)


def ecbsr_plain_forward(sd, x, scale, num_block):
    y = x
    for i in range(num_block + 1):
        y = prelu(conv2d(y, sd[f"backbone.{i}.0.weight"], sd[f"backbone.{i}.0.bias"]), sd[f"backbone.{i}.1.weight"])
    y = conv2d(y, sd[f"backbone.{num_block + 1}.0.weight"], sd[f"backbone.{num_block + 1}.0.bias"])
    return pixel_shuffle_crd(y + repeat_interleave(x, scale * scale), scale)


def edsr_forward_pytorch_keys(sd, x, scale, num_block, res_scale, mean=(0.4488, 0.4371, 0.4040)):
    m = np.array(mean)[:, None, None]
    h = conv2d((x - m) * 255.0, sd["head.0.weight"], sd["head.0.bias"])
    r = h
    for i in range(num_block):
        t = relu(conv2d(r, sd[f"body.{i}.body.0.weight"], sd[f"body.{i}.body.0.bias"]))
        r = r + res_scale * conv2d(t, sd[f"body.{i}.body.2.weight"], sd[f"body.{i}.body.2.bias"])
    r = conv2d(r, sd[f"body.{num_block}.weight"], sd[f"body.{num_block}.bias"]) + h
    stages = [scale] if scale in (2, 3) else [2, 2]
    for k, f in enumerate(stages):
        r = pixel_shuffle_crd(conv2d(r, sd[f"tail.0.{2 * k}.weight"], sd[f"tail.0.{2 * k}.bias"]), f)
    return conv2d(r, sd["tail.1.weight"], sd["tail.1.bias"]) / 255.0 + m


def random_state_dict(shapes, seed=0, scale=0.1):
    rng = np.random.default_rng(seed)
    return {k: (rng.standard_normal(s) * scale).astype(np.float32) for k, s in shapes.items()}
