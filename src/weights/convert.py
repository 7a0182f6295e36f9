"""Map published PyTorch state dicts onto this project's Cells.

Each family has a function returning ``{our_name: array}``. Convs whose output
feeds a pixel shuffle are permuted from PyTorch's CRD channel order to
MindSpore's DCR order (see ``src/models/common.py``); a conv that consumes such
channels gets the same permutation on its input axis.

Sources: ETDS repository (ABPN, ETDS plain, ECBSR plain; x2/x3/x4), and EDSR from
either EDSR-PyTorch (``head``/``body``/``tail``) or BasicSR (``conv_first``/...).
"""
import numpy as np

from src.models.common import crd_to_dcr
from src.models.edsr import upsample_stages
from src.weights.checkpoint import CheckpointError, check_fit


class _Mapper:
    def __init__(self, torch_sd):
        self.src = torch_sd
        self.used = set()
        self.out = {}

    def take(self, name):
        if name not in self.src:
            raise CheckpointError(f"PyTorch state dict has no '{name}' (is it the right --model/--variant?)")
        self.used.add(name)
        return self.src[name]

    def conv(self, ours, theirs, out_perm=None, in_perm=None, bias=True):
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
        self.out[ours] = np.ascontiguousarray(self.take(theirs), dtype=np.float32)

    def unused(self, ignore=()):
        return sorted(k for k in self.src if k not in self.used and not any(k.startswith(i) for i in ignore))


def _extend(perm, channels):
    """A permutation for the first len(perm) channels; padding channels keep their place.

    Weights with fewer channels than the shuffle needs are left as they are, so
    that ``check_fit`` reports the shape mismatch with every other one.
    """
    if channels < len(perm):
        return np.arange(channels)
    return np.concatenate([perm, np.arange(len(perm), channels)])


def _count_indexed(sd, prefix, suffix):
    idx = set()
    for k in sd:
        if k.startswith(prefix) and k.endswith(suffix):
            head = k[len(prefix):].split(".")[0]
            if head.isdigit():
                idx.add(int(head))
    return sorted(idx)


def _abpn(m, net):
    perm = crd_to_dcr(3 * net.scale ** 2, net.scale)
    convs = _count_indexed(m.src, "backbone.", ".weight")
    m.conv("conv_first", "backbone.0")
    for i in range(len(net.body)):
        m.conv(f"body.{i}", f"backbone.{i + 2}.0")
    m.conv("conv_up", f"backbone.{convs[-2]}", out_perm=perm)
    m.conv("conv_last", f"backbone.{convs[-1]}", out_perm=perm, in_perm=perm)


def _etds(m, net):
    perm = crd_to_dcr(net.out_ch, net.scale)
    m.conv("conv_first", "conv_first")
    for i in range(len(net.backbone_convs)):
        m.conv(f"backbone_convs.{i}", f"backbone_convs.{i}")
    m.conv("conv_last", "conv_last", out_perm=perm)
    m.conv("conv_clip", "conv_clip", out_perm=perm, in_perm=perm)


def _ecbsr(m, net):
    n_blocks = len(net.blocks)
    for i in range(n_blocks):
        m.conv(f"blocks.{i}.conv", f"backbone.{i}.0")
        m.copy(f"blocks.{i}.act.w", f"backbone.{i}.1.weight")
    perm = crd_to_dcr(3 * net.scale ** 2, net.scale)
    m.conv("conv_last", f"backbone.{n_blocks}.0", out_perm=perm)


def _edsr(m, net):
    stages = upsample_stages(net.scale)
    n_blocks = len(net.body)
    if "head.0.weight" in m.src:  # EDSR-PyTorch
        names = dict(first="head.0", block="body.{i}.body.{j}", after=f"body.{n_blocks}",
                     up="tail.0.{k}", last="tail.1")
        conv_idx = (0, 2)
    else:  # BasicSR
        names = dict(first="conv_first", block="body.{i}.conv{j}", after="conv_after_body",
                     up="upsample.{k}", last="conv_last")
        conv_idx = (1, 2)
    m.conv("conv_first", names["first"])
    for i in range(n_blocks):
        for ours, j in zip(("conv1", "conv2"), conv_idx):
            m.conv(f"body.{i}.{ours}", names["block"].format(i=i, j=j))
    m.conv("conv_after_body", names["after"])
    feat = net.conv_first.out_channels
    for k, factor in enumerate(stages):
        m.conv(f"upsample.{k}.conv", names["up"].format(k=2 * k),
               out_perm=crd_to_dcr(feat * factor * factor, factor))
    m.conv("conv_last", names["last"])


def _abpn_et(m, net):
    """Published ABPN_ET layout: backbone.0, backbone.{2..M+1}.0, backbone.{M+2}, .{M+4}, .{M+6} (1x1 clip)."""
    perm = crd_to_dcr(net.out_ch, net.scale)
    hidden = len(net.backbone_convs) - 1
    m.conv("conv_first", "backbone.0")
    for i in range(hidden):
        m.conv(f"backbone_convs.{i}", f"backbone.{i + 2}.0")
    m.conv(f"backbone_convs.{hidden}", f"backbone.{hidden + 2}")
    m.conv("conv_last", f"backbone.{hidden + 4}", out_perm=perm)
    m.conv("conv_clip", f"backbone.{hidden + 6}", out_perm=perm, in_perm=perm)


def _ecbsr_et(m, net):
    """Published ECBSRET layout: backbone.i.0 conv + backbone.i.1 PReLU, then conv_last and 1x1 clip."""
    perm = crd_to_dcr(net.out_ch, net.scale)
    hidden = len(net.backbone_convs)
    m.conv("conv_first", "backbone.0.0")
    m.copy("acts.0.w", "backbone.0.1.weight")
    for i in range(hidden):
        m.conv(f"backbone_convs.{i}", f"backbone.{i + 1}.0")
        m.copy(f"acts.{i + 1}.w", f"backbone.{i + 1}.1.weight")
    m.conv("conv_last", f"backbone.{hidden + 1}.0", out_perm=perm)
    m.conv("conv_clip", f"backbone.{hidden + 2}.0", out_perm=perm, in_perm=perm)


_FAMILY_MAPS = {"abpn": (_abpn, ()), "etds": (_etds, ()), "ecbsr": (_ecbsr, ()),
                "abpn_et": (_abpn_et, ()), "ecbsr_et": (_ecbsr_et, ()),
                "edsr": (_edsr, ("sub_mean.", "add_mean."))}


def convert_torch_state_dict(net, torch_sd):
    """Return ``{name: array}`` for ``net`` (built by the registry) from a PyTorch state dict."""
    family = getattr(net, "model_name", None)
    if family not in _FAMILY_MAPS:
        raise CheckpointError(f"no PyTorch weight mapping for model '{family}'; supported: {sorted(_FAMILY_MAPS)}")
    mapping, ignore = _FAMILY_MAPS[family]
    mapper = _Mapper(torch_sd)
    mapping(mapper, net)
    leftover = mapper.unused(ignore)
    if leftover:
        raise CheckpointError(
            f"PyTorch weights have {len(leftover)} tensors the {family} model does not use "
            f"({', '.join(leftover[:5])}); wrong --variant (more blocks?)")
    check_fit(net, mapper.out, source="converted PyTorch weights")
    return mapper.out
