"""Any image size through a fixed-shape graph: overlapping windows of the file's input size.

Mobile exports take one input size (default 1 x C x 360 x 640). An image is cut
into windows of exactly that size, placed so that each output pixel is taken
from a window that sees at least ``overlap`` LR pixels of real image on every
side (where the image has them): windows step by ``tile - 2 * overlap`` and the
last one is moved back to end at the image border, so no window hangs over the
image unless the image is smaller than the window. Neighbouring windows split
their shared region at its middle. With ``overlap`` at least the model's
receptive radius the result equals the untiled output wherever the image fills
the window.

An image smaller than the window along an axis is padded at the bottom/right
up to the window (``PAD_MODE``, numpy's ``symmetric``: the image mirrored,
its border row/column repeated). No padding equals the untiled run there: the
untiled graph pads every layer's features with zeros at the image border, the
padded window sees made-up pixels instead, so outputs within the receptive
radius of the padded border differ. Measured with float ONNX files of 1 x 3 x
360 x 640 (every Set5/Set14 LR image is smaller, so all are padded), PSNR change
against the checkpoint (Y, shave 3), Set5 / Set14 in dB:

| padding          | ABPN-M4C28 x3     | ETDS-M4C32 x3     |
|------------------|-------------------|-------------------|
| symmetric        | -0.002 / -0.005   | -0.000 / -0.006   |
| reflect          | -0.011 / -0.012   | -0.009 / -0.012   |
| edge             | -0.024 / -0.026   | -0.021 / -0.026   |
| constant (zeros) | -0.161 / -0.061   | -0.153 / -0.062   |
"""
import numpy as np

PAD_MODE = "symmetric"


def window_plan(size, tile, overlap):
    """``[(start, lo, hi)]`` along one axis of ``size`` pixels for windows of ``tile`` pixels.

    Window ``k`` covers input ``[start, start + tile)`` and provides output for
    ``[lo, hi)``; the ``[lo, hi)`` ranges tile ``[0, size)`` without gaps or
    overlap. When ``size <= tile`` there is one window at 0 (to be padded).
    Context on each side of ``[lo, hi)`` is at least ``overlap`` when
    ``tile > 2 * overlap`` (else windows step by one pixel and the context is
    about ``tile / 2``).
    """
    if size <= tile:
        return [(0, 0, size)]
    step = max(1, tile - 2 * overlap)
    starts = [0]
    while starts[-1] + tile < size:
        starts.append(min(starts[-1] + step, size - tile))
    bounds = [0] + [(starts[k] + starts[k - 1] + tile) // 2 for k in range(1, len(starts))] + [size]
    return [(start, bounds[k], bounds[k + 1]) for k, start in enumerate(starts)]


def run_windows(run_window, x, tile_hw, scale, overlap, pad_mode=PAD_MODE):
    """Super-resolve ``x`` (float32 N x C x H x W, any H, W) with a graph of fixed input size.

    ``run_window`` maps a float32 ``1 x C x th x tw`` array (``tile_hw`` =
    (th, tw)) to ``1 x C x th*scale x tw*scale``; ``overlap`` is in LR pixels.
    Returns float32 ``N x C x H*scale x W*scale``; windows run one at a time, one
    image of the batch after another.
    """
    n, c, h, w = x.shape
    th, tw = tile_hw
    s = int(scale)
    out = np.empty((n, c, h * s, w * s), np.float32)
    rows, cols = window_plan(h, th, overlap), window_plan(w, tw, overlap)
    for i in range(n):
        for y0, ylo, yhi in rows:
            for x0, xlo, xhi in cols:
                patch = x[i:i + 1, :, y0:y0 + th, x0:x0 + tw]
                pad_h, pad_w = th - patch.shape[2], tw - patch.shape[3]
                if pad_h or pad_w:
                    patch = np.pad(patch, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode=pad_mode)
                y = run_window(np.ascontiguousarray(patch, np.float32))
                out[i, :, ylo * s:yhi * s, xlo * s:xhi * s] = \
                    y[0, :, (ylo - y0) * s:(yhi - y0) * s, (xlo - x0) * s:(xhi - x0) * s]
    return out
