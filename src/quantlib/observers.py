"""Calibration observers: collect statistics of a tensor over batches, then give (lower, upper).

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

from src.quantlib.fake_quant import quantize_np

METHODS = ("minmax", "percentile", "omse", "dbdc", "dbdc_pac")


def dbdc_bounds(values, p=1e-4, bins=2048):
    """Density-based dual clipping of one batch: (lower, upper)."""
    values = np.asarray(values, np.float64).ravel()
    lo_v, hi_v = float(values.min()), float(values.max())
    if hi_v <= lo_v:
        return lo_v, hi_v
    hist, edges = np.histogram(values, bins=bins, range=(lo_v, hi_v))
    return dbdc_from_histogram(hist, edges, p)


def dbdc_from_histogram(hist, edges, p=1e-4):
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
    """Clip range on a (lower, upper) grid shrinking [min, max] that minimises the fake-quant MSE.

    A tensor of one value ``c`` (a dead ReLU, a constant input) has no range to search:
    its bounds are ``(c, c)`` (symmetric: ``(-|c|, |c|)``), as minmax gives, which
    ``FakeQuant.set_bounds`` widens to include 0 so ``c`` sits exactly on the grid
    (zero error). ``ValueError`` for an empty or non-finite tensor.
    """
    values = np.asarray(values, np.float64).ravel()
    if values.size == 0 or not np.isfinite(values).all():
        raise ValueError("omse calibration got an empty or non-finite tensor; check the model and calibration data")
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


class ActivationObserver:
    """Per-tensor statistics of an activation over calibration batches."""

    def __init__(self, method, bits, percentile=0.9999, dbdc_p=1e-4, bins=2048):
        if method not in METHODS:
            raise ValueError(f"unknown quant_method '{method}'; choose one of {METHODS}")
        self.method = "dbdc" if method == "dbdc_pac" else method
        self.bits, self.percentile, self.dbdc_p, self.bins = bits, percentile, dbdc_p, bins
        self.per_batch = []
        self.samples = []
        self.min, self.max = np.inf, -np.inf

    def update(self, x):
        x = np.asarray(x, np.float64).ravel()
        self.min, self.max = min(self.min, float(x.min())), max(self.max, float(x.max()))
        if self.method == "percentile":
            self.per_batch.append(np.quantile(x, [1.0 - self.percentile, self.percentile]))
        elif self.method == "dbdc":
            self.per_batch.append(dbdc_bounds(x, self.dbdc_p, self.bins))
        elif self.method == "omse":
            keep = min(x.size, 20_000)
            self.samples.append(np.random.default_rng(len(self.samples)).choice(x, keep, replace=False))

    def bounds(self):
        if not np.isfinite(self.min):
            raise ValueError("observer saw no data; run calibration batches first")
        if self.method == "minmax":
            return self.min, self.max
        if self.method == "omse":
            return omse_bounds(np.concatenate(self.samples), self.bits)
        lows, highs = np.asarray(self.per_batch).T
        return float(lows.mean()), float(highs.mean())


def weight_bounds(weight, method, bits, symmetric=True):
    """Per-output-channel (lower, upper) arrays for a conv/dense weight."""
    w = np.asarray(weight, np.float64).reshape(weight.shape[0], -1)
    if method == "omse":
        pairs = [omse_bounds(row, bits, symmetric) for row in w]
        return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    if symmetric:
        amax = np.abs(w).max(axis=1)
        return -amax, amax
    return w.min(axis=1), w.max(axis=1)
