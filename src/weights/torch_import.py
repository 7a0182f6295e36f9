"""Import published PyTorch state dicts into this project's Cells.

Each family's record (src/models/<family>.py, ``torch_map``) says which PyTorch tensor fills which
of our parameters; :class:`TorchMapper` does the lookups, the channel permutations and the
bookkeeping. Convs whose output feeds a pixel shuffle are permuted from PyTorch's CRD channel order to
MindSpore's DCR order (see ``src/models/common.py``); a conv that consumes such channels gets the same
permutation on its input axis.

Sources: ETDS repository (ABPN, ETDS plain, ECBSR plain, their ET forms; x2/x3/x4), and EDSR from
either EDSR-PyTorch (``head``/``body``/``tail``) or BasicSR (``conv_first``/...).
"""
import numpy as np

from src.models.registry import FAMILIES  # the registry imports every family file, so all are registered
from src.weights.checkpoint import CheckpointError, check_fit


class TorchMapper:
    """``{our name: float32 array}`` built from a PyTorch state dict ``src``, remembering what was used."""

    def __init__(self, torch_sd):
        self.src = torch_sd
        self.used = set()
        self.out = {}

    @staticmethod
    def fail(message):
        """Raise CheckpointError(``message``): for a family's map that finds the weights cannot fit."""
        raise CheckpointError(message)

    def take(self, name):
        """The tensor ``name`` of the PyTorch dict; CheckpointError when it has none."""
        if name not in self.src:
            raise CheckpointError(f"PyTorch state dict has no '{name}' (is it the right --model/--variant?)")
        self.used.add(name)
        return self.src[name]

    def conv(self, ours, theirs, out_perm=None, in_perm=None, bias=True):
        """Conv ``theirs`` -> ``ours`` (weight and bias), channels permuted by ``out_perm`` / ``in_perm``."""
        w = self.take(f"{theirs}.weight")
        if out_perm is not None:
            w = w[_extend(out_perm, w.shape[0])]
        if in_perm is not None:
            w = w[:, _extend(in_perm, w.shape[1])]
        self.out[f"{ours}.weight"] = np.ascontiguousarray(w, dtype=np.float32)
        if bias:
            b = self.take(f"{theirs}.bias")
            if out_perm is not None:
                b = b[_extend(out_perm, b.shape[0])]
            self.out[f"{ours}.bias"] = np.ascontiguousarray(b, dtype=np.float32)

    def copy(self, ours, theirs):
        """Tensor ``theirs`` -> ``ours`` unchanged (float32)."""
        self.out[ours] = np.ascontiguousarray(self.take(theirs), dtype=np.float32)

    def indices(self, prefix, suffix):
        """Sorted integers i of the names ``<prefix><i>...<suffix>`` in the PyTorch dict."""
        idx = set()
        for k in self.src:
            if k.startswith(prefix) and k.endswith(suffix):
                head = k[len(prefix):].split(".")[0]
                if head.isdigit():
                    idx.add(int(head))
        return sorted(idx)

    def unused(self, ignore=()):
        """Names of the PyTorch dict not taken, except those starting with a prefix in ``ignore``."""
        return sorted(k for k in self.src if k not in self.used and not any(k.startswith(i) for i in ignore))


def _extend(perm, channels):
    """A permutation for the first len(perm) channels; padding channels keep their place.

    Weights with fewer channels than the shuffle needs are left as they are, so
    that ``check_fit`` reports the shape mismatch with every other one.
    """
    if channels < len(perm):
        return np.arange(channels)
    return np.concatenate([perm, np.arange(len(perm), channels)])


def convert_torch_state_dict(net, torch_sd):
    """Return ``{name: array}`` for ``net`` (built by the registry) from a PyTorch state dict.

    Raises CheckpointError when the family has no PyTorch mapping, a tensor is missing, the dict has
    tensors the model does not use, or a shape does not fit.
    """
    name = net.spec.model if net.spec else None
    record = FAMILIES.get(name)
    if record is None or record.torch_map is None:
        supported = sorted(n for n, f in FAMILIES.items() if f.torch_map is not None)
        raise CheckpointError(f"no PyTorch weight mapping for model '{name}'; supported: {supported}")
    mapper = TorchMapper(torch_sd)
    record.torch_map(mapper, net)
    leftover = mapper.unused(record.torch_ignore)
    if leftover:
        raise CheckpointError(
            f"PyTorch weights have {len(leftover)} tensors the {name} model does not use "
            f"({', '.join(leftover[:5])}); wrong --variant (more blocks?)")
    check_fit(net, mapper.out, source="converted PyTorch weights")
    return mapper.out
