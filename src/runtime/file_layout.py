"""What an exported file's input and output tensors say: layout (NCHW / NHWC), channels, fixed size, scale.

Read from the shapes the file declares, never guessed from the extension: an
ONNX/MindIR graph written by export.py is ``1 x C x H x W`` (NCHW), a TFLite
file ``1 x H x W x C`` (NHWC), but a file converted elsewhere may differ. The
layout is the one whose channel axis holds 1 or 3 in both input and output and
whose two spatial axes grow by the same integer factor from input to output.
Only when the shapes cannot tell (channel and spatial dimensions all unknown)
is the format's usual layout assumed.
"""
from dataclasses import dataclass

from src.runtime.metadata import ExportedModelError

_AXES = {"NCHW": (1, (2, 3)), "NHWC": (3, (1, 2))}


def _known(d):
    """A positive int dimension, else None (unknown)."""
    try:
        d = int(d)
    except (TypeError, ValueError):
        return None
    return d if d > 0 else None


@dataclass(frozen=True)
class FileIO:
    """The input/output description of an exported graph.

    ``layout``: ``"NCHW"`` or ``"NHWC"``; ``channels``: 1 or 3 (None when the
    file does not fix it); ``tile_hw``: the fixed input (height, width) in LR
    pixels, or None when the graph takes any size; ``scale``: output/input size
    ratio when both are fixed, else None.
    """
    layout: str
    channels: object
    tile_hw: object
    scale: object

    def to_file(self, x):
        """NCHW array -> the file's layout (a view)."""
        return x.transpose(0, 2, 3, 1) if self.layout == "NHWC" else x

    def from_file(self, y):
        """An output in the file's layout -> NCHW (a view)."""
        return y.transpose(0, 3, 1, 2) if self.layout == "NHWC" else y


def _candidate(layout, inp, out):
    """FileIO for ``layout`` if the shapes fit it, else None."""
    c_axis, (h_axis, w_axis) = _AXES[layout]
    cin, cout = inp[c_axis], out[c_axis]
    if cin not in (1, 3) or (cout is not None and cout != cin):
        return None
    ratios = []
    for axis in (h_axis, w_axis):
        if inp[axis] and out[axis]:
            if out[axis] % inp[axis]:
                return None
            ratios.append(out[axis] // inp[axis])
    if len(set(ratios)) > 1 or (ratios and ratios[0] < 1):
        return None
    tile = (inp[h_axis], inp[w_axis]) if inp[h_axis] and inp[w_axis] else None
    scale = ratios[0] if len(ratios) == 2 else None
    return FileIO(layout, cin, tile, scale)


def describe_io(path, in_shape, out_shape, usual_layout):
    """FileIO from the declared ``in_shape`` / ``out_shape`` (sequences of 4 dims; str, -1, 0 or None
    mark an unknown dimension; the whole shape None when the file declares none).

    Raises ExportedModelError (one line) for a graph that is not 4-D, takes a
    batch other than 1, or whose shapes fit neither 1 x C x H x W nor
    1 x H x W x C with C in {1, 3}.
    """
    if in_shape is None or out_shape is None:
        return FileIO(usual_layout, None, None, None)
    if len(in_shape) != 4 or len(out_shape) != 4:
        raise ExportedModelError(f"{path} takes a {len(in_shape)}-D input and gives a {len(out_shape)}-D output, "
                                 "not the 4-D image tensors of an SR model; re-export it with export.py")
    inp = tuple(map(_known, in_shape))
    out = tuple(map(_known, out_shape))
    if inp[0] not in (None, 1):
        raise ExportedModelError(f"{path} takes a batch of {inp[0]} images; the runners feed one image (batch 1) "
                                 "at a time: re-export it with a batch of 1")
    fits = [io for io in (_candidate(layout, inp, out) for layout in _AXES) if io is not None]
    if len(fits) == 1:
        return fits[0]
    shown = "x".join("?" if d is None else str(d) for d in inp)
    shown_out = "x".join("?" if d is None else str(d) for d in out)
    if fits:  # both fit (e.g. 1x3x3x3): the format's own layout
        return next(io for io in fits if io.layout == usual_layout)
    if all(inp[a] is None for a in (1, 2, 3)):
        return FileIO(usual_layout, None, None, None)
    raise ExportedModelError(f"{path} maps a {shown} input to {shown_out}: neither 1xCxHxW (NCHW) nor 1xHxWxC "
                             "(NHWC) with 1 or 3 channels scaled by one integer factor, so not an SR model; "
                             "re-export it with export.py")
