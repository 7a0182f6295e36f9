"""What a third-party SR graph cannot tell by its shapes, measured by running it: pixel range and receptive radius.

Used for model files that carry no SR metadata (another project's .tflite/.onnx, a TensorFlow
SavedModel being imported), where this project would otherwise have to assume.

- **Pixel range** (:func:`pixel_range_scores`, :func:`choose_pixel_range`): SR networks are trained
  either on pixels in [0, 1] (this project, BasicSR, EDSR-PyTorch after its mean shift) or in 0..255
  (the ABPN authors' Keras model, MLPerf's EDSR). Fed the wrong range, their biases dominate and the
  output is far from the image (MLPerf's EDSR on [0, 1] input: Set5 9.5 dB). A smooth test image
  (:func:`probe_image`) is run at each range; the output, averaged over each ``scale x scale`` block,
  must come back as the input (any SR model reproduces smooth content). The range whose PSNR of that
  comparison is high, and clearly above the other's, is the file's.
- **Receptive radius** (:func:`measure_receptive_radius`): how many LR pixels each output pixel sees,
  needed for exact tiling. One input pixel is changed by a large step and the farthest output pixel
  that changes, in LR pixels (Chebyshev distance), is the radius. For a float graph this is exact
  (as declared by a network's layers: e.g. 13 for EDSR-F32B5, 7 for ABPN-M4C28); for an integer graph a
  change can be absorbed by rounding far out, so the measured value is a lower bound.

Pure numpy: ``run`` callables map a float32 ``1 x C x H x W`` array (NCHW, in the range being tried)
to ``1 x C x sH x sW``.
"""
import numpy as np

PIXEL_RANGES = (1.0, 255.0)
#: PSNR (dB) the block means of the right range's output reach at least (measured: 38-52 dB on the
#: zoo's and the third-party files; the wrong range: below 20 dB).
MIN_PROBE_PSNR = 30.0
#: How far (dB) the right range must be above the other.
MIN_PROBE_MARGIN = 10.0


def probe_image(height, width, channels, seed=0):
    """A smooth float32 test image ``1 x channels x height x width`` in [0.15, 0.85]: a few low-frequency
    cosines per channel (periods of 12 pixels and longer), deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.empty((1, channels, height, width), np.float32)
    for c in range(channels):
        acc = np.zeros((height, width))
        for _ in range(3):
            fy, fx = rng.uniform(-1.0, 1.0, 2) / 12.0
            acc += np.cos(2 * np.pi * (fy * yy + fx * xx) + rng.uniform(0, 2 * np.pi))
        img[0, c] = 0.5 + 0.35 * acc / 3.0
    return img


def _block_psnr(out, image, scale, margin):
    """PSNR (dB, peak 1) of ``out``'s ``scale x scale`` block means against ``image``, ``margin`` LR
    pixels of border left out."""
    n, c, h, w = image.shape
    blocks = out[:, :, :h * scale, :w * scale].reshape(n, c, h, scale, w, scale).mean(axis=(3, 5))
    m = min(margin, (min(h, w) - 1) // 4)
    diff = (np.clip(blocks, 0.0, 1.0) - image)[:, :, m:h - m, m:w - m]
    mse = float(np.mean(diff.astype(np.float64) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(1.0 / mse)


def pixel_range_scores(run, image, scale, margin=8, ranges=PIXEL_RANGES):
    """``{range: PSNR dB}``: ``image`` (values in [0, 1]) times each range through ``run``, the output
    divided by it, compared block-wise with ``image``. A range whose run fails or gives the wrong shape
    scores 0."""
    scores = {}
    for r in ranges:
        try:
            out = np.asarray(run(np.ascontiguousarray(image * r, np.float32)), np.float64) / r
        except Exception:  # pylint: disable=broad-except  # a runtime refusing the input is a score of 0
            scores[r] = 0.0
            continue
        expected = (image.shape[0], image.shape[1], image.shape[2] * scale, image.shape[3] * scale)
        scores[r] = _block_psnr(out, image, scale, margin) if out.shape == expected else 0.0
    return scores


def choose_pixel_range(scores):
    """The range of :func:`pixel_range_scores` that is proven (at least :data:`MIN_PROBE_PSNR` and
    :data:`MIN_PROBE_MARGIN` above every other), else None."""
    best = max(scores, key=scores.get)
    others = [v for r, v in scores.items() if r != best]
    if scores[best] >= MIN_PROBE_PSNR and all(scores[best] - v >= MIN_PROBE_MARGIN for v in others):
        return best
    return None


def describe_scores(scores):
    """``"0..1: 12.3 dB, 0..255: 45.6 dB"`` for messages."""
    return ", ".join(f"0..{r:g}: {v:.1f} dB" for r, v in sorted(scores.items()))


def measure_receptive_radius(run, image, scale, tol=0.0, points=None):
    """LR pixels (per side, Chebyshev) over which one input pixel changes the output of ``run``.

    ``image``: ``1 x C x H x W`` in the range ``run`` expects; the pixel at each of ``points``
    (default: the centre) is moved by half the image's value range (all channels) and the farthest
    output pixel whose value changes by more than ``tol`` (in output units; 0 for a float graph: outside the
    receptive field the arithmetic is bit-identical, inside a change survives float32 even where it is tiny)
    gives the radius.
    Returns ``(radius, reached_border)``: ``reached_border`` True when changes reach the image
    border, so the radius is at least the value returned.
    """
    _, _, h, w = image.shape
    base = np.asarray(run(image), np.float64)
    lo, hi = float(image.min()), float(image.max())
    step = (hi - lo) / 2 or 0.5
    radius, border = 0, False
    for py, px in points or [(h // 2, w // 2)]:
        moved = image.copy()
        value = moved[0, :, py, px]
        moved[0, :, py, px] = np.where(value - lo > (hi - lo) / 2, value - step, value + step)
        changed = np.abs(np.asarray(run(moved), np.float64) - base).max(axis=(0, 1)) > tol
        ys, xs = np.nonzero(changed)
        if not len(ys):
            continue
        # output pixel (y, x) lies in LR pixel (y // scale, x // scale)
        dist = np.maximum(np.abs(ys // scale - py), np.abs(xs // scale - px))
        radius = max(radius, int(dist.max()))
        border |= bool(ys.min() == 0 or xs.min() == 0 or ys.max() == h * scale - 1 or xs.max() == w * scale - 1)
    return radius, border
