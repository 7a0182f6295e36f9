"""Training losses as Cells wrapping a network."""
from mindspore import nn


class SRLoss(nn.Cell):
    """L1(net(lr), hr); for dual-output nets (ETDS) plus ``residual_weight * L1(r_out, hr)``."""

    def __init__(self, net, residual_weight=0.5):
        super().__init__(auto_prefix=False)  # keep the wrapped net's parameter names
        self.net = net
        self.dual = bool(net.train_outputs)
        self.residual_weight = residual_weight
        self.l1 = nn.L1Loss()

    def construct(self, lr, hr):
        if self.dual:
            out, r_out = self.net(lr)
            return self.l1(out, hr) + self.residual_weight * self.l1(r_out, hr)
        return self.l1(self.net(lr), hr)
