"""Where the full-integer file rounds what PTQ4SR's placement keeps in float: the deployment sites.

:func:`find_sites` reads the mobile-profile float ONNX graph of a network (the graph the int8
TFLite and mobile ONNX files are written from) with the mobile planning rules of
:mod:`src.export.onnx.qdq_plan` and returns the :class:`~src.quantlib.deploy.Site` list that
:mod:`src.quantlib.deploy` installs, so the quantized model rounds the same tensors on the same
grids. :func:`site_grids` goes the other way at export: the grids of a calibrated deployment
model for the planner, read from its quantizers (nothing is observed at export). Building a network's
mobile graph to find its sites is :mod:`src.export.deploy_calibration` (this module builds nothing, so
the export passes can import it).

Per tensor of the graph (every conv quantized at 8 bits):

- a conv output read only by quantized convs: their input grid (no site);
- a conv output that is the residual term of the image-grid output sum: ``residual``;
- a conv output read by one Relu: no site when the Relu output is read only by quantized convs or
  (RGB models) is the output image (image grid = the evaluation's own 8-bit rounding), else ``relu_out``;
- a conv output read by one PReLU: ``prelu`` (split form), plus ``act_out`` when the PReLU output
  is read by something other than quantized convs;
- a conv output read by a quantized conv and other ops: ``tied`` to that conv's input grid;
- an Add output read by a quantized conv and other ops (a residual chain, e.g. EDSR's blocks): the
  input of the block holding that conv (its parent cell, which must have ``input_quant``), ``tied_input``
  to that conv's input grid, as the planner puts it;
- (RGB models) a conv output that is the output image through data movement and ``Clip(0, 1)`` (EDSR's
  mobile layout): no site, the image grid;
- any other conv output: ``conv_out``;
- the graph input of a Y model on the image grid: ``input``;
- Add / Concat / DepthToSpace / Clip: the image-grid sum, a reader conv's grid, or data
  movement over one grid (no site). Anything else raises :class:`DeployUnsupported`.
"""
from mindspore import nn

from src.export.onnx.onnx_graph import consumers, producers
from src.export.onnx.qdq_plan import (DATA_MOVEMENT_OPS, act_grid, image_tail, is_image_sum_term, reaches_image_output,
                                 reaches_output)
from src.quantlib.deploy import QuantPReLU, Site, sites_of
from src.quantlib.quant_layers import cell_at
from src.errors import UserError

_MOVE_OR_CLIP = DATA_MOVEMENT_OPS + ("Concat", "Clip")


class DeployUnsupported(UserError):
    """The graph holds a tensor the deployment simulation cannot express (e.g. an Add output that
    is neither the output image nor a conv input): the model can only be quantized with PTQ4SR's
    placement, whose PSNR is not the file's."""


def prelu_cell(node):
    """Dotted cell path of the MindSpore PReLU that a traced ``PRelu`` node came from (its output name
    holds MindSpore's scope, e.g. ``3-Default/blocks-CellList/0-ConvPReLU/act-PReLU/PReLU-op0`` ->
    ``blocks.0.act``)."""
    parts = node.output[0].split("/")
    if len(parts) < 3:
        raise DeployUnsupported(f"PRelu output {node.output[0]} carries no MindSpore cell scope")
    return ".".join(p.split("-")[0] for p in parts[1:-1])


class _Graph:
    """The reading helpers of one graph."""

    def __init__(self, model, rgb):
        self.graph = model.graph
        self.users, self.writers = consumers(self.graph), producers(self.graph)
        self.inputs = {v.name for v in self.graph.input}
        self.output = self.graph.output[0].name
        self.image_sums = {image_tail(self.graph), image_tail(self.graph, clip=False) if rgb else None} - {None}
        self.rgb = rgb

    @staticmethod
    def layer(node):
        if node is None or node.op_type != "Conv" or not node.input[1].endswith(".weight"):
            return None
        return node.input[1][:-len(".weight")]

    def readers(self, tensor):
        return self.users.get(tensor, [])

    def conv_data_readers(self, tensor):
        return [n for n in self.readers(tensor) if self.layer(n) is not None and n.input[0] == tensor]

    def only_convs(self, tensor):
        readers = self.readers(tensor)
        return bool(readers) and len(self.conv_data_readers(tensor)) == len(readers)

    def reaches_output(self, tensor):
        return reaches_output(self.users, self.output, tensor)

    def is_residual(self, tensor):
        return is_image_sum_term(self.users, self.writers, self.inputs, self.image_sums, tensor)

    def anchor_source(self, tensor):
        return any(r.op_type == "Concat" and any(self.is_residual(t) for t in self._add_terms(r.output[0]))
                   for r in self.readers(tensor))

    def _add_terms(self, tensor):
        return [name for add in self.readers(tensor) if add.op_type == "Add" for name in add.input if name != tensor]


def find_sites(model, net):
    """The :class:`~src.quantlib.deploy.Site` list of the float network ``net`` (its ``n_colors`` and
    cells) from its mobile-profile float ONNX ``model`` (see the module notes), with the ONNX tensor
    each site rounds: ``[(site, tensor)]``. :class:`DeployUnsupported` naming the tensor the
    simulation cannot express."""
    g = _Graph(model, net.n_colors == 3)
    found = []
    for node in g.graph.node:
        if node.op_type == "Conv":
            found += _conv_sites(g, node, net)
        elif node.op_type == "Add":
            out = node.output[0]
            if out not in g.image_sums and not g.only_convs(out):
                found.append((_tied_input_site(g, out, net), out))
        elif node.op_type in ("Relu", "PRelu"):
            if g.layer(g.writers.get(node.input[0])) is None:
                raise DeployUnsupported(f"the {node.op_type} {node.output[0]} does not follow a conv")
        elif node.op_type not in _MOVE_OR_CLIP:
            raise DeployUnsupported(f"{node.op_type} {node.output[0]}")
    for value in g.graph.input:
        if g.rgb or g.anchor_source(value.name):
            if not g.rgb:
                found.append((Site("input", ""), value.name))
        elif not g.only_convs(value.name):
            raise DeployUnsupported(f"the input {value.name} is read by ops other than convs")
    return found


def _conv_sites(g, node, net):
    layer, out = g.layer(node), node.output[0]
    if layer is None:
        raise DeployUnsupported(f"the Conv {out} has no '<layer>.weight'")
    readers = g.readers(out)
    if g.is_residual(out):
        return [(Site("residual", layer), out)]
    if len(readers) == 1 and readers[0].op_type == "Relu":
        relu_out = readers[0].output[0]
        if g.only_convs(relu_out) or (g.rgb and g.reaches_output(relu_out)):
            return []
        return [(Site("relu_out", layer), relu_out)]
    if len(readers) == 1 and readers[0].op_type == "PRelu":
        cell = prelu_cell(readers[0])
        if not isinstance(_cell(net, cell), (nn.PReLU, QuantPReLU)):
            raise DeployUnsupported(f"the PRelu {readers[0].output[0]} is not the PReLU cell '{cell}'")
        sites = [(Site("prelu", cell, layer), out)]
        if not g.only_convs(readers[0].output[0]):
            sites.append((Site("act_out", cell), readers[0].output[0]))
        return sites
    if g.only_convs(out) or not readers or (g.rgb and reaches_image_output(g.graph, g.users, out)):
        return []  # (RGB: the output image, on the evaluation's own 8-bit grid)
    convs = g.conv_data_readers(out)
    if convs:
        return [(Site("tied", layer, g.layer(convs[0])), out)]
    return [(Site("conv_out", layer), out)]


def _tied_input_site(g, tensor, net):
    """``tied_input`` Site of an Add output read by a quantized conv (and other ops) whose parent block has
    ``input_quant``; DeployUnsupported otherwise."""
    convs = g.conv_data_readers(tensor)
    readers = ", ".join(sorted({r.op_type for r in g.readers(tensor)}))
    if not convs:
        raise DeployUnsupported(f"the Add output {tensor} is read by {readers}")
    layer = g.layer(convs[0])
    block = layer.rsplit(".", 1)[0] if "." in layer else ""
    if not block or not hasattr(_cell(net, block), "input_quant"):
        raise DeployUnsupported(f"the Add output {tensor} is read by {readers}, and the block of {layer} has no "
                                "input_quant to round it")
    return Site("tied_input", block, layer)


def _cell(net, path):
    try:
        return cell_at(net, path)
    except ValueError:
        return None


def site_grids(model, qnet):
    """``(layer_grids, tensor_grids)`` for :func:`src.export.onnx.qdq_plan.plan_mobile` from the deployment
    model ``qnet`` and its mobile float ONNX ``model``: ``{conv layer: Grid}`` of conv outputs (its
    own site grid, or the PReLU input grid for a ``prelu`` site), ``{tensor: Grid}`` of PReLU
    outputs (``act_out``). ValueError when the checkpoint's sites are not the ones this graph needs
    (it was calibrated for another network)."""
    have = sites_of(qnet)
    found = find_sites(model, qnet)
    want = [site for site, _ in found]
    if sorted(s.as_list() for s in have) != sorted(s.as_list() for s in want):
        raise UserError("the checkpoint's deployment sites do not match this network's graph "
                         f"(checkpoint: {len(have)}, graph: {len(want)}); calibrate it again")
    layer_grids, tensor_grids = {}, {}
    for site, tensor in found:
        cell = cell_at(qnet, site.cell)
        if site.kind in ("conv_out", "relu_out", "residual"):
            layer_grids[site.cell] = act_grid(cell.out_quant)
        elif site.kind == "prelu":
            layer_grids[site.peer] = act_grid(cell.in_quant)
        elif site.kind == "act_out":
            tensor_grids[tensor] = act_grid(cell.out_quant)
    return layer_grids, tensor_grids


__all__ = ["DeployUnsupported", "find_sites", "site_grids", "prelu_cell"]
