"""Parameter, operation and energy counts of a model's deploy form at a given input size.

Counting rules (those of the SESR and AdderNet papers):
- ``weights``: convolution / adder kernel elements (the published parameter counts);
  ``params``: every trainable parameter (biases, PReLU slopes, ...).
- A convolution multiply-accumulate (MAC) = 1 multiplication + 1 addition; an
  adder-layer MAC (|x - w| then accumulate) = 2 additions. Biases, activations and
  residual additions are element-wise and not counted, as in the papers.
- Energy: fp32 3.7 pJ per multiplication and 0.9 pJ per addition; int8 0.2 pJ and
  0.03 pJ (Horowitz, ISSCC 2014, as used by AdderNet).

Layer output sizes come from one forward pass with hooks (PyNative mode) on an
input 1/8 of the size in each dimension when it divides evenly, scaled back up.
"""
from dataclasses import dataclass

import numpy as np
from mindspore import Tensor, nn

from src.models.adder import Adder2D
from src.utils.hooks import forward_hooks

ENERGY_PJ = {"fp32": {"mul": 3.7, "add": 0.9}, "int8": {"mul": 0.2, "add": 0.03}}


@dataclass
class Complexity:
    """Counts for one LR input: trainable ``params``, conv/adder kernel ``weights``, and MACs by layer kind."""

    params: int
    weights: int
    conv_macs: int
    adder_macs: int

    @property
    def multiplications(self):
        """Multiplications: one per convolution MAC (adder layers have none)."""
        return self.conv_macs

    @property
    def additions(self):
        """Additions: one per convolution MAC, two per adder-layer MAC (``|x - w|``, then accumulate)."""
        return self.conv_macs + 2 * self.adder_macs

    def energy_mj(self, precision="fp32"):
        """Arithmetic energy in millijoules at ``precision`` 'fp32' or 'int8' (KeyError otherwise)."""
        e = ENERGY_PJ[precision]
        return (self.multiplications * e["mul"] + self.additions * e["add"]) * 1e-9


def layer_macs(net, input_hw, layers, n_colors=None):
    """``[(cell, MACs)]`` for the ``layers`` (cells of ``net`` with a ``weight``: Conv2d, Adder2D, Dense)
    for one LR input of ``input_hw`` (H, W) pixels with ``n_colors`` channels (default: the channels
    ``net`` declares), in the order they ran: kernel elements x output pixels (one multiply-accumulate
    per kernel element and output pixel; a Dense layer's output has one "pixel")."""
    h, w = (int(v) for v in input_hw)
    n_colors = int(n_colors or net.n_colors)
    factor = 8 if h % 8 == 0 and w % 8 == 0 else 1
    probe = (h // factor, w // factor)
    records = []

    def hook(cell, _inputs, output):
        pixels = int(np.prod(output.shape[2:]))
        records.append((cell, int(cell.weight.size) * pixels * (factor * factor if output.ndim > 2 else 1)))

    with forward_hooks([(layer, hook) for layer in layers]):
        net.set_train(False)
        net(Tensor(np.full((1, n_colors) + probe, 0.5, np.float32)))
    return records


def count(net, input_hw, n_colors=None):
    """:class:`Complexity` of ``net`` for one LR input of ``input_hw`` (H, W) pixels with ``n_colors``
    channels (default: the channels ``net`` declares)."""
    layers = [c for _, c in net.cells_and_names() if isinstance(c, (nn.Conv2d, Adder2D))]
    conv_macs = adder_macs = 0
    for cell, macs in layer_macs(net, input_hw, layers, n_colors):
        if isinstance(cell, Adder2D):
            adder_macs += macs
        else:
            conv_macs += macs
    params = int(sum(p.size for p in net.trainable_params()))
    weights = int(sum(layer.weight.size for layer in layers))
    return Complexity(params, weights, conv_macs, adder_macs)
