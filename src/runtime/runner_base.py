"""The runner of an exported file, whatever its runtime: :class:`ExportedRunner` reads and checks what the
file says (metadata, shapes, pixel range, receptive radius) and runs any image through the runtime's
``_run`` in windows when the file's input size is fixed. The runtimes: :mod:`src.runtime.runners` (ONNX,
ORT, MindIR, and ``open_exported``), :mod:`src.runtime.tflite_runner` (LiteRT); both import this module,
which imports neither."""
import re

import numpy as np
from mindspore import Tensor

from src.runtime.file_layout import describe_io
from src.runtime.fixed_tiles import PAD_MODE, run_windows
from src.runtime.metadata import ExportedModelError, default_peak_channels, parse_metadata
from src.models.base import ModelSpec
from src.utils.file_probe import (choose_pixel_range, describe_scores, measure_receptive_radius, pixel_range_scores,
                                  probe_image)
from src.errors import UserError

PROBE = 16
RADIUS_PROBE = 48  # LR pixels each side of the probed pixel in a file that takes any size (radius up to 48)
PIXEL_RANGE_CHOICES = ("auto", "1", "255")
MAX_WINDOW_BYTES = 2 << 30  # float32 input + output of one fixed-size window (a 1080p x4 window needs 0.4 GiB)


def runtime_error_line(exc, limit=160):
    """The first line of a runtime's exception text, without onnxruntime's error code and C++ source location."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : ", "", text)
    text = re.sub(r"Load model from .* failed:", "", text)
    text = re.sub(r"/\S+\.(cc|h):\d+ .*?\) (?=[A-Z])", "", text)  # onnxruntime's source line and C++ signature
    return text[:limit]


class ExportedRunner:
    """Common part: metadata, layout, fixed-size windows, probe, Tensor in/out.

    Subclasses set ``FORMAT`` and ``USUAL_LAYOUT`` and implement ``invoke`` (one
    run on a float32 array in the file's own layout and size). ``in_shape`` /
    ``out_shape`` are the shapes the file declares (None for a dimension it
    leaves open, or None when it declares none).

    Attributes: ``n_colors`` (1 or 3), ``scale``, ``receptive_radius`` (LR pixels,
    the tile overlap SRPredictor uses by default), ``peak_channels`` (channels per
    LR pixel for automatic tile sizes), ``io`` (:class:`~src.runtime.file_layout.FileIO`:
    layout and fixed ``tile_hw``), ``overlap`` (LR pixels of context around each
    fixed-size window), ``metadata`` (the parsed dict, or None for a file
    exported without it) and ``notice`` (one line to show the user when values
    were assumed, else None).
    """

    FORMAT = ""
    USUAL_LAYOUT = "NCHW"

    def __init__(self, path, raw_metadata=None, in_shape=None, out_shape=None, tile_overlap=-1,
                 pixel_range="auto"):
        self.path = path
        self.io = describe_io(path, in_shape, out_shape, self.USUAL_LAYOUT)
        self.metadata = parse_metadata(raw_metadata, path)
        self.notice = None
        self.overlap = 0
        self.pixel_range = 1.0
        pixel_range = str(pixel_range)
        if pixel_range not in PIXEL_RANGE_CHOICES:
            raise UserError(f"--pixel_range must be one of {', '.join(PIXEL_RANGE_CHOICES)}, not '{pixel_range}'")
        self._check_window_size()
        if self.metadata is None:
            self._describe_unknown(tile_overlap, pixel_range)
            return
        if pixel_range == "255":
            raise ExportedModelError(f"{path} records this project's SR metadata, so it takes pixels in [0, 1]; "
                                     "drop --pixel_range 255")
        self.n_colors, self.scale = self.metadata["n_colors"], self.metadata["scale"]
        self.receptive_radius = self.metadata["receptive_radius"]
        self.peak_channels = self.metadata["peak_channels"] or default_peak_channels(self.scale)
        self.overlap = int(tile_overlap) if tile_overlap >= 0 else self.receptive_radius
        self._check_shapes()
        self._check_metadata(overlap_given=tile_overlap >= 0)
        tile = self.io.tile_hw
        if tile and min(tile) <= 2 * self.overlap:
            small = (f"note: {path} takes a fixed {tile[0]}x{tile[1]} input, too small for {self.overlap} LR "
                     "pixels of context on both sides of each window; outputs near window seams may differ "
                     "from an untiled run: export it with a larger --input_shape")
            self.notice = f"{self.notice}; {small[len('note: '):]}" if self.notice else small

    def _check_window_size(self):
        """A fixed input so large that one window cannot be held (e.g. a declared 1x3x40000x40000, to which every
        image would be padded) is refused before anything runs."""
        if not self.io.tile_hw:
            return
        h, w = self.io.tile_hw
        scale = self.io.scale or (self.metadata or {}).get("scale") or 1
        channels = self.io.channels or 3
        need = h * w * channels * 4 * (1 + scale * scale)
        if need > MAX_WINDOW_BYTES:
            raise ExportedModelError(f"{self.path} takes a fixed {h}x{w} input: one window needs {need / 2 ** 30:.1f} GiB "
                                     f"(float32 input and x{scale} output), over the {MAX_WINDOW_BYTES / 2 ** 30:.0f} GiB "
                                     "a window may take; re-export it with a smaller --input_shape such as 1,C,360,640")

    def _describe_unknown(self, tile_overlap, pixel_range):
        """Channels, scale, pixel range and receptive radius of a file without SR metadata, from its shapes and
        test runs; :attr:`notice` says what was found and how."""
        path = self.path
        if self.io.tile_hw and self.io.scale:
            self.n_colors, self.scale = self.io.channels, self.io.scale
            found = f"x{self.scale} and {self.n_colors} colour(s) from its input/output shapes"
        else:
            self.n_colors, self.scale = self._probe()
            found = f"x{self.scale} and {self.n_colors} colour(s) from a test run"
        if self.scale < 2:
            raise ExportedModelError(f"{path} returns images of the size it takes (x{self.scale}): not an "
                                     "upscaler, so there is nothing to evaluate as super-resolution")
        self.pixel_range, range_how = self._settle_pixel_range(pixel_range)
        self.peak_channels = default_peak_channels(self.scale)  # conservative: for automatic tile sizes
        h, w = self.io.tile_hw or (2 * RADIUS_PROBE + 1, 2 * RADIUS_PROBE + 1)
        image = probe_image(h, w, self.n_colors, seed=1)
        integer_out = self.integer_output
        radius, border = measure_receptive_radius(self.forward_in_range, image, self.scale,
                                                  tol=0.5 / 255 if integer_out else 0.0)
        self.receptive_radius = radius
        self.overlap = int(tile_overlap) if tile_overlap >= 0 else radius
        radius_how = (f"receptive radius {'at least ' if border else ''}{radius} LR pixels measured on the file "
                      "(one input pixel changed" + (", a lower bound for an integer graph" if integer_out else "")
                      + ")")
        self.notice = (f"note: {path} carries no SR metadata (unknown model): {found}; {range_how}; {radius_how}"
                       + (f"; tile overlap {self.overlap} (--tile_overlap)" if tile_overlap >= 0 else ""))

    @property
    def integer_output(self):
        """True when the file's output is an integer tensor (rounded to its levels); subclasses say."""
        return False

    def declared_pixel_range(self):
        """(range, words) the file's own IO declares (an integer input's quantization), else (None, None)."""
        return None, None

    def _settle_pixel_range(self, option):
        """(pixel range, how it was found) for a file without metadata: ``option`` '1'/'255' or 'auto'."""
        declared, words = self.declared_pixel_range()
        h, w = self.io.tile_hw or (48, 48)
        image = probe_image(h, w, self.n_colors)
        scores = pixel_range_scores(self._forward_scaled, image, self.scale)
        if option != "auto":
            chosen = float(option)
            if declared is not None and declared != chosen:
                raise ExportedModelError(f"{self.path}: --pixel_range {option} contradicts the file, whose {words} "
                                         f"(test image: {describe_scores(scores)}); drop --pixel_range")
            return chosen, f"pixels in 0..{chosen:g} (--pixel_range; test image: {describe_scores(scores)})"
        proven = choose_pixel_range(scores)
        if declared is not None:
            if proven != declared:
                elsewhere = f" (it does at 0..{proven:g})" if proven is not None else ""
                raise ExportedModelError(
                    f"{self.path}: its {words}, but a smooth test image does not come back at that range{elsewhere} "
                    f"({describe_scores(scores)}): the file is not what it declares; pass --pixel_range if you "
                    "know its range")
            return declared, f"pixels in 0..{declared:g} (its {words}; test image {describe_scores(scores)})"
        if proven is None:
            raise ExportedModelError(f"{self.path} carries no SR metadata and a smooth test image does not tell its "
                                     f"pixel range ({describe_scores(scores)}); pass --pixel_range 1 or 255")
        return proven, f"pixels in 0..{proven:g} (proven on a test image: {describe_scores(scores)})"

    def _forward_scaled(self, x):
        """One run of ``x`` already in the trial range (no division): for the pixel-range probe."""
        return self.forward_raw(x)

    @property
    def spec(self):
        """:class:`~src.models.base.ModelSpec` (form 'deploy') from the file's ``sr.model``/``sr.variant``/
        ``sr.scale``; None for a file without metadata. The family options are not part of it."""
        if self.metadata is None:
            return None
        return ModelSpec.of(self.metadata["model"], self.metadata["variant"], self.scale)

    @property
    def kind(self):
        """What the file holds, for reports: e.g. ``"int8 QDQ ONNX (file)"``, ``"float TFLite (file)"``."""
        recorded = (self.metadata or {}).get("kind") or "unrecorded kind of"
        return f"{recorded} {self.FORMAT} (file)"

    def _check_shapes(self):
        """The declared shapes must agree with the metadata's channels and scale."""
        if self.io.channels is not None and self.io.channels != self.n_colors:
            raise ExportedModelError(f"{self.path} takes {self.io.channels}-channel images ({self.io.layout}) but its "
                                     f"metadata records {self.n_colors} colour(s); re-export it with export.py")
        if self.io.scale is not None and self.io.scale != self.scale:
            raise ExportedModelError(f"{self.path} upscales its fixed input x{self.io.scale} but its metadata records "
                                     f"x{self.scale}; re-export it with export.py")

    def _probe(self):
        errors = []
        for channels in ((self.io.channels,) if self.io.channels else (3, 1)):
            try:
                out = self.forward(np.zeros((1, channels, PROBE, PROBE), np.float32))
            except Exception as exc:  # runtimes raise their own types for a wrong channel count
                errors.append(runtime_error_line(exc))
                continue
            return channels, out.shape[-1] // PROBE
        raise UserError(f"{self.path} does not run on a 1x3 or 1x1 channel image: {errors[-1]}")

    def _check_metadata(self, overlap_given=False):
        """One probe run with the recorded channel count: the graph must agree with its metadata."""
        try:
            out = self.run(np.zeros((1, self.n_colors, PROBE, PROBE), np.float32))
        except Exception as exc:  # runtimes raise their own types
            raise ExportedModelError(f"{self.path} does not run on the {self.n_colors}-channel input its metadata "
                                     f"records ({runtime_error_line(exc)}); re-export it with export.py") from None
        expected = (1, self.n_colors, PROBE * self.scale, PROBE * self.scale)
        if tuple(out.shape) != expected:
            raise ExportedModelError(f"{self.path} turns a {PROBE}x{PROBE} input into {tuple(out.shape)}, not the "
                                     f"{expected} its metadata (x{self.scale}, {self.n_colors} colour(s)) records; "
                                     "re-export it with export.py")
        self._check_radius(overlap_given)

    def _check_radius(self, overlap_given):
        """The recorded receptive radius against one measured on the file (one input pixel changed): changes
        beyond the recorded radius (tiles would show seams), or a record (over 64) far beyond what reaches the
        output (absurd overlaps, e.g. 4096) are refused; with ``--tile_overlap`` given, a note instead."""
        recorded = self.receptive_radius
        side = 2 * min(recorded + 4, RADIUS_PROBE) + 1
        h, w = self.io.tile_hw or (side, side)
        measured, border = measure_receptive_radius(self.forward_in_range, probe_image(h, w, self.n_colors, seed=1),
                                                    self.scale, tol=0.5 / 255 if self.integer_output else 0.0)
        # the recorded radius is the architecture's bound: weights may reach less (a float graph's measurement is
        # exact, a rounding graph's a lower bound), never more; a record far beyond the reach is absurd
        wrong = measured > recorded or (not border and recorded > 64 and recorded > 4 * measured + 16)
        if wrong:
            reach = f"{'at least ' if border else ''}{measured}"
            words = (f"{self.path} records a receptive radius of {recorded} LR pixels, but one input pixel changes its "
                     f"output {reach} pixels away (measured on the file)")
            if not overlap_given:
                raise ExportedModelError(words + "; re-export it with export.py or pass --tile_overlap")
            self.notice = f"note: {words}; the tile overlap is --tile_overlap {self.overlap}"

    def invoke(self, x):
        """One run of the graph: float32 array in the file's layout and (fixed) size -> its output."""
        raise NotImplementedError

    def forward_raw(self, x):
        """One run on float32 NCHW ``x`` in the file's own pixel range, of a size the graph takes -> its output."""
        return np.asarray(self.io.from_file(self.invoke(np.ascontiguousarray(self.io.to_file(x), np.float32))),
                          np.float32)

    def forward(self, x):
        """One run on float32 NCHW ``x`` in [0, 1] of a size the graph takes -> float32 NCHW output in [0, 1]
        units (the file's pixel range divided out)."""
        if self.pixel_range == 1.0:
            return self.forward_raw(x)
        return self.forward_raw(np.asarray(x, np.float32) * np.float32(self.pixel_range)) / np.float32(self.pixel_range)

    def forward_in_range(self, x):
        """As :meth:`forward`, any size (windows for a fixed-size file, before the overlap is known: none)."""
        if self.io.tile_hw is None or tuple(x.shape[2:]) == tuple(self.io.tile_hw):
            return self.forward(x)
        return run_windows(self.forward, x, self.io.tile_hw, self.scale, 0, PAD_MODE)

    def run(self, x):
        """Float32 NCHW in [0, 1] of any size -> float32 NCHW output, in windows for a fixed-size file."""
        if self.io.tile_hw is None:
            return self.forward(x)
        return run_windows(self.forward, x, self.io.tile_hw, self.scale, self.overlap, PAD_MODE)

    def __call__(self, x):
        return Tensor(self.run(x.asnumpy() if isinstance(x, Tensor) else x))

    def set_train(self, mode=False):
        """No-op (a file has no training mode), so predictors treat a runner like a Cell; returns ``self``."""
        del mode
        return self

    def set_inputs(self, *inputs):
        """No-op (the file fixes its own input shapes), as ``Cell.set_inputs`` for dynamic shapes; returns ``self``."""
        del inputs
        return self
