"""The interface every SR network declares (:class:`SRNet`) and what it was built as (:class:`ModelSpec`).

Evaluation, tiling, quantization, export and checkpoints read only these attributes; the runners
for exported files (``ExportedRunner``) declare the ones inference reads (``scale``, ``n_colors``,
``receptive_radius``, ``peak_channels``, ``spec``) from the file's metadata.

| attribute                 | meaning                                                                 | default |
|---------------------------|-------------------------------------------------------------------------|---------|
| ``scale``                 | upscaling factor s: (N, C, H, W) -> (N, C, sH, sW)                      | (given) |
| ``n_colors``              | C: 3 (RGB) or 1 (Y of BT.601 YCbCr), values in [0, 1]                   | 3       |
| ``receptive_radius``      | LR pixels each output pixel depends on, per side (default tile overlap) | 16      |
| ``peak_channels``         | widest activation, channels per LR pixel (automatic tile size)          | None = estimate from the convs |
| ``equalization_pairs()``  | ``(name_a, name_b)`` convs separated only by a (P)ReLU                  | none    |
| ``residual_parameters()`` | parameters frozen early in training (ETDS residual stream)              | none    |
| ``has_train_outputs``     | the net can return ``(out, aux)`` for the training loss                 | False   |
| ``train_outputs``         | it does so now (set by the trainer)                                     | False   |
| ``spec``                  | :class:`ModelSpec` set by ``create_model``, derived by conversions      | None    |
"""
from dataclasses import dataclass, replace

from mindspore import nn

#: Tile overlap in LR pixels assumed for a network that does not know its receptive field.
ASSUMED_RADIUS = 16


@dataclass(frozen=True)
class ModelSpec:
    """What a network is: family ``model``, ``variant``, ``scale`` (2, 3, 4), ``form`` ('train' or
    'deploy') and the family ``options`` it was built with (``n_colors``, SESR's ``act``, ...).

    Set once by :func:`~src.models.registry.create_model`; conversions derive theirs
    (:meth:`deployed`), quantization keeps it. Options are kept as ordered ``(key, value)`` pairs so the
    spec is immutable; :attr:`options` gives them as a dict in the order they were given.
    """

    model: str
    variant: str
    scale: int
    form: str = "deploy"
    option_items: tuple = ()

    @classmethod
    def of(cls, model, variant, scale, form="deploy", options=None):
        """Spec from plain values; ``options`` a mapping (its order is kept)."""
        return cls(str(model).lower(), str(variant), int(scale), form, tuple(dict(options or {}).items()))

    @property
    def options(self):
        """The family options as a new dict."""
        return dict(self.option_items)

    def deployed(self):
        """The spec of this network's deploy form."""
        return replace(self, form="deploy")

    def meta(self):
        """Checkpoint metadata: ``model``, ``variant``, ``scale``, ``form``, then the options."""
        return {"model": self.model, "variant": self.variant, "scale": self.scale, "form": self.form,
                **self.options}


class SRNet(nn.Cell):
    """Base of every super-resolution network: ``construct`` maps (N, n_colors, H, W) float32 in [0, 1]
    to (N, n_colors, scale*H, scale*W) (clipped to [0, 1] where the family clips).

    Subclasses call ``super().__init__(scale, n_colors)`` and set ``receptive_radius`` and
    ``peak_channels``; the table in this module's docstring lists every attribute and its default.
    """

    spec = None
    n_colors = 3
    receptive_radius = ASSUMED_RADIUS
    peak_channels = None
    has_train_outputs = False
    train_outputs = False

    def __init__(self, scale, n_colors=3):
        super().__init__()
        self.scale, self.n_colors = int(scale), int(n_colors)

    def equalization_pairs(self):
        """Names of conv pairs separated only by a ReLU/PReLU (see src/quantlib/equalize.py); none by default."""
        return []

    def residual_parameters(self):
        """Parameters to freeze early in training; none by default."""
        return []

    # Identity by its old attribute names (read-only; reports and messages use them).
    @property
    def model_name(self):
        """Family name from :attr:`spec` ('' for a network not built by ``create_model``)."""
        return self.spec.model if self.spec else ""

    @property
    def variant(self):
        """Variant name from :attr:`spec` ('' when unknown)."""
        return self.spec.variant if self.spec else ""

    @property
    def form(self):
        """'train' or 'deploy' from :attr:`spec` ('deploy' when unknown)."""
        return self.spec.form if self.spec else "deploy"

    @property
    def options(self):
        """Family options from :attr:`spec` (a new dict; empty when unknown)."""
        return self.spec.options if self.spec else {}
