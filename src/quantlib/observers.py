"""Calibration observers: collect statistics of a tensor over batches, then give (lower, upper).

One class per method, all with one contract (after ``torch.ao.quantization``'s ``ObserverBase``):
``collect(x)`` takes one batch of the tensor (any shape, real units), ``bounds()`` gives the
per-tensor activation range, ``weight_bounds(w, bits, symmetric)`` the per-output-channel weight
range. :data:`OBSERVERS` maps a method name to its class; ``dbdc_pac`` (DBDC, then PaC) is not
an observer: the config edge maps it to DBDC plus a PaC refinement step.

| method      | activations (per tensor, asymmetric)                        | weights (per output channel)        |
|-------------|-------------------------------------------------------------|-------------------------------------|
| minmax      | min / max over all batches                                   | min / max (symmetric: max abs)      |
| percentile  | mean over batches of the p and 1-p quantiles                | as minmax                           |
| omse        | (lower, upper) on a grid minimising the quantization MSE    | per-channel clip search, same loss  |
| dbdc        | density-based dual clipping (PTQ4SR), mean over batches     | as minmax                           |

DBDC: histogram of the batch (2048 bins between its min and max); while removing
the edge bin (left or right) that holds fewer values keeps at least ``1 - p`` of
the values, remove it; the bounds are the outer edges of the bins left.
"""
import numpy as np

from src.quantlib.grid import quantize_np
from src.errors import UserError


def dbdc_bounds(values, p=1e-4, bins=2048):
    """Density-based dual clipping of one batch: (lower, upper) as floats, over a ``bins``-bin
    histogram of ``values`` (any shape) between their min and max; a constant batch gives
    ``(c, c)``. ``p``: the largest fraction of values clipped. Follows PTQ4SR (Tu et al., "Toward
    Accurate Post-Training Quantization for Image Super Resolution", CVPR 2023)."""
    values = np.asarray(values, np.float64).ravel()
    lo_v, hi_v = float(values.min()), float(values.max())
    if hi_v <= lo_v:
        return lo_v, hi_v
    hist, edges = np.histogram(values, bins=bins, range=(lo_v, hi_v))
    return dbdc_from_histogram(hist, edges, p)


def dbdc_from_histogram(hist, edges, p=1e-4):
    """DBDC on a histogram (``hist``: counts of ``len(edges) - 1`` bins, ``edges`` increasing): drop
    the smaller edge bin (left on a tie) while at least ``1 - p`` of the count stays; returns the
    outer edges ``(lower, upper)`` of the bins left."""
    total = float(hist.sum())
    keep_at_least = (1.0 - p) * total
    left, right = 0, len(hist) - 1
    kept = total
    while left < right:
        smaller_left = hist[left] <= hist[right]
        drop = hist[left] if smaller_left else hist[right]
        if kept - drop < keep_at_least:
            break
        kept -= drop
        if smaller_left:
            left += 1
        else:
            right -= 1
    return float(edges[left]), float(edges[right + 1])


def omse_bounds(values, bits, symmetric=False, grid=20, max_samples=200_000, seed=0):
    """Clip range on a (lower, upper) grid shrinking [min, max] that minimises the fake-quant MSE
    (OMSE: Choukroun et al., "Low-bit quantization of neural networks for efficient inference",
    ICCVW 2019). ``values``: any shape, real units; at most ``max_samples`` (seeded) are used.
    Asymmetric: ``grid`` x ``grid`` shrinks of each end by 0 to 50 % of the range; symmetric:
    ``4 grid`` values of ``a`` in [0.3, 1] x max |value|, bounds ``(-a, a)``. Returns floats.

    A tensor of one value ``c`` (a dead ReLU, a constant input) has no range to search:
    its bounds are ``(c, c)`` (symmetric: ``(-|c|, |c|)``), as minmax gives, which
    ``FakeQuant.set_bounds`` widens to include 0 so ``c`` sits exactly on the grid
    (zero error). ``ValueError`` for an empty or non-finite tensor.
    """
    values = np.asarray(values, np.float64).ravel()
    if values.size == 0 or not np.isfinite(values).all():
        raise UserError("omse calibration got an empty or non-finite tensor; check the model and calibration data")
    if values.size > max_samples:
        values = np.random.default_rng(seed).choice(values, max_samples, replace=False)
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        amax = abs(lo)
        return (-amax, amax) if symmetric else (lo, hi)
    if symmetric:
        amax = max(abs(lo), abs(hi))
        best = min((np.mean((quantize_np(values, -a, a, bits, True) - values) ** 2), a)
                   for a in amax * np.linspace(0.3, 1.0, 4 * grid))
        return -best[1], best[1]
    span = hi - lo
    shrink = np.linspace(0.0, 0.5, grid)
    best = None
    for a in shrink:
        for b in shrink:
            lower, upper = lo + a * span, hi - b * span
            if upper <= lower:
                continue
            err = np.mean((quantize_np(values, lower, upper, bits, False) - values) ** 2)
            if best is None or err < best[0]:
                best = (err, lower, upper)
    return best[1], best[2]


class Observer:
    """Base observer: min / max of every batch seen. Subclasses add their statistic in ``_collect``
    and their bounds in ``_bounds``; ``weight_bounds`` defaults to min / max (max |w| if symmetric).

    ``bits``: the activation bit width (the grid a search such as OMSE fits to).
    """

    def __init__(self, bits):
        self.bits = bits
        self.min, self.max = np.inf, -np.inf

    @classmethod
    def from_settings(cls, bits, settings):
        """The observer for ``bits`` with its own options read from ``settings`` (a
        :class:`~src.quantlib.calibrate.CalibrationConfig`)."""
        del settings
        return cls(bits)

    def collect(self, x):
        """Add one batch of the observed tensor (array of any shape, real units)."""
        x = np.asarray(x, np.float64).ravel()
        self.min, self.max = min(self.min, float(x.min())), max(self.max, float(x.max()))
        self._collect(x)

    def _collect(self, x):
        pass

    def bounds(self):
        """Per-tensor ``(lower, upper)`` floats over the batches collected. ``ValueError`` before any batch."""
        if not np.isfinite(self.min):
            raise ValueError("observer saw no data; run calibration batches first")
        return self._bounds()

    def _bounds(self):
        return self.min, self.max

    def weight_bounds(self, weight, bits, symmetric=True):
        """Per-output-channel ``(lower, upper)`` float64 arrays of shape (out_channels,) for a
        conv / dense weight (out_channels first) on a ``bits``-bit grid."""
        del bits
        w = _rows(weight)
        if symmetric:
            amax = np.abs(w).max(axis=1)
            return -amax, amax
        return w.min(axis=1), w.max(axis=1)


def _rows(weight):
    return np.asarray(weight, np.float64).reshape(weight.shape[0], -1)


class MinMaxObserver(Observer):
    """min / max over all batches (weights: per channel min / max, or max |w| if symmetric)."""


class _PerBatchMean(Observer):
    """Bounds of each batch, averaged over the batches (PTQ4SR's calibration averages so)."""

    def __init__(self, bits):
        super().__init__(bits)
        self.per_batch = []

    def _collect(self, x):
        self.per_batch.append(self._batch_bounds(x))

    def _batch_bounds(self, x):
        raise NotImplementedError

    def _bounds(self):
        lows, highs = np.asarray(self.per_batch).T
        return float(lows.mean()), float(highs.mean())


class PercentileObserver(_PerBatchMean):
    """Mean over batches of the ``1 - percentile`` and ``percentile`` quantiles (percentile in (0.5, 1])."""

    def __init__(self, bits, percentile=0.9999):
        super().__init__(bits)
        self.percentile = percentile

    @classmethod
    def from_settings(cls, bits, settings):
        return cls(bits, settings.percentile)

    def _batch_bounds(self, x):
        return np.quantile(x, [1.0 - self.percentile, self.percentile])


class DBDCObserver(_PerBatchMean):
    """Density-based dual clipping (PTQ4SR, :func:`dbdc_bounds`) of each batch, mean over batches."""

    def __init__(self, bits, p=1e-4, bins=2048):
        super().__init__(bits)
        self.p, self.bins = p, bins

    @classmethod
    def from_settings(cls, bits, settings):
        return cls(bits, settings.dbdc_p)

    def _batch_bounds(self, x):
        return dbdc_bounds(x, self.p, self.bins)


class OMSEObserver(Observer):
    """:func:`omse_bounds` over up to 20,000 values sampled from each batch (seeded by batch index);
    weights: the same search per output channel."""

    def __init__(self, bits):
        super().__init__(bits)
        self.samples = []

    def _collect(self, x):
        keep = min(x.size, 20_000)
        self.samples.append(np.random.default_rng(len(self.samples)).choice(x, keep, replace=False))

    def _bounds(self):
        return omse_bounds(np.concatenate(self.samples), self.bits)

    def weight_bounds(self, weight, bits, symmetric=True):
        pairs = [omse_bounds(row, bits, symmetric) for row in _rows(weight)]
        return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


OBSERVERS = {"minmax": MinMaxObserver, "percentile": PercentileObserver, "omse": OMSEObserver,
             "dbdc": DBDCObserver}


def observer_class(method):
    """The observer class of ``method`` (a key of :data:`OBSERVERS`); ``ValueError`` naming the choices."""
    if method not in OBSERVERS:
        raise UserError(f"unknown quant_method '{method}'; choose one of {tuple(OBSERVERS)}")
    return OBSERVERS[method]


__all__ = ["Observer", "MinMaxObserver", "PercentileObserver", "DBDCObserver", "OMSEObserver", "OBSERVERS",
           "observer_class", "dbdc_bounds", "dbdc_from_histogram", "omse_bounds"]
