"""Test helpers: write PyTorch zip-format state dicts without torch, and numpy
reference forwards of the published PyTorch networks (CRD PixelShuffle order)."""
import collections
import io
import pickle
import sys
import types
import zipfile

import numpy as np

_DTYPE_STORAGE = {np.dtype(np.float32): "FloatStorage", np.dtype(np.int64): "LongStorage"}


def save_torch_format(state_dict, path):
    """Write ``{name: np.ndarray}`` the way ``torch.save`` (zip, protocol 2) does."""
    fake_torch = types.ModuleType("torch")
    fake_utils = types.ModuleType("torch._utils")
    storage_types = {}
    for name in set(_DTYPE_STORAGE.values()):
        cls = type(name, (), {"__module__": "torch"})
        setattr(fake_torch, name, cls)
        storage_types[name] = cls

    def _rebuild_tensor_v2(*args):  # never called while saving
        raise AssertionError(args)
    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    fake_utils._rebuild_tensor_v2 = _rebuild_tensor_v2

    class _Storage:
        def __init__(self, key, array):
            self.key, self.array = key, array

    class _Tensor:
        def __init__(self, storage, shape):
            self.storage, self.shape = storage, shape

        def __reduce__(self):
            stride, acc = [], 1
            for dim in reversed(self.shape):
                stride.insert(0, acc)
                acc *= dim
            return (_rebuild_tensor_v2, (self.storage, 0, tuple(self.shape), tuple(stride), False,
                                         collections.OrderedDict()))

    blobs = {}
    obj = collections.OrderedDict()
    for i, (name, arr) in enumerate(state_dict.items()):
        arr = np.ascontiguousarray(arr)
        blobs[str(i)] = arr.tobytes()
        obj[name] = _Tensor(_Storage(str(i), arr), arr.shape)

    class _Pickler(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, _Storage):
                return ("storage", storage_types[_DTYPE_STORAGE[o.array.dtype]], o.key, "cpu", o.array.size)
            return None

    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules["torch"], sys.modules["torch._utils"] = fake_torch, fake_utils
    try:
        buf = io.BytesIO()
        _Pickler(buf, protocol=2).dump(obj)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/version", "3\n")
        for key, raw in blobs.items():
            zf.writestr(f"archive/data/{key}", raw)


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
