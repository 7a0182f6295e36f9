"""infer.py engine: upscale an image or a folder with a checkpoint or an exported .onnx, .ort, .mindir or .tflite file.

Outputs are ``<output_path>/<stem>_x<s>.png``. Inputs that would write the same file
(``a.png`` and ``a.jpg``; compared ignoring case, as macOS and Windows file systems do)
all get their extension in the name instead (``a_png_x2.png``, ``a_jpg_x2.png``), so
no output overwrites another; if names still clash, or an output would replace one of
the inputs, nothing is run and the error lists the clashes.

Images with an alpha channel (RGBA, LA, palette or colour-key transparency) keep it:
the RGB image goes through the model, the alpha channel is upscaled separately with
the MATLAB-compatible bicubic (clipped to [0, 1]) and the output is an RGBA PNG.

In a folder, an unreadable image (corrupt, truncated, 16-bit, ...) is reported on one
line and skipped; the others are still written, and the run ends with an error (exit
code 2) naming the skipped files. The count printed is the number of files written.
"""
import os
from collections import defaultdict

import numpy as np
from tqdm import tqdm

from src.data.image_io import ImageError, image_size, list_images, read_image, write_png
from src.data.imresize import imresize
from src.engine.inference import CHROMA_CONTEXT, SRPredictor, peak_bytes_per_lr_pixel
from src.engine.sections import upscale_sections
from src.errors import InputNotFoundError, UserError
from src.paths import resolve_path, select_checkpoint
from src.runtime.runners import open_exported
from src.weights.loader import load_float_and_quantized


def _model_for(request, source, log):
    """(network-like object, scale, description) for the model file ``source`` (resolved: ``--model_file``,
    ``--pre_trained`` or the shipped checkpoint) as ``request`` (:class:`~src.engine.sections.Upscale`) says."""
    kinds = "(.ckpt, .onnx, .ort, .mindir, .tflite)"
    if os.path.isdir(source):
        raise InputNotFoundError(f"model file {source} is a folder; pass --model_file {kinds} or --pre_trained naming "
                                "a file")
    if not os.path.isfile(source):
        raise InputNotFoundError(f"model file {source} does not exist; pass --model_file {kinds} or --pre_trained")
    model = request.model
    if source.lower().endswith(".ckpt"):
        fp_net, q_net, _ = load_float_and_quantized(model.model, model.variant, model.scale, source,
                                                    model.option_dict())
        net = q_net if q_net is not None else fp_net
        return net, model.scale, f"{model.model}-{model.variant} x{model.scale} checkpoint {source}"
    runner = open_exported(source, log=log, tile_overlap=request.inference.tile_overlap,
                           pixel_range=request.inference.pixel_range)
    if request.scale_given and runner.scale != model.scale:
        raise UserError(f"{source} upscales x{runner.scale} but --scale is {model.scale}; drop --scale or pass "
                         f"--scale {runner.scale}")
    tiles = f", fixed {runner.io.tile_hw[0]}x{runner.io.tile_hw[1]} windows" if runner.io.tile_hw else ""
    log(f"{source}: {runner.kind}, x{runner.scale}, {runner.n_colors}-channel {runner.io.layout} input{tiles}")
    return runner, runner.scale, f"{runner.kind} {source}"


def output_names(paths, scale):
    """``{input path: output file name}`` for ``paths`` at ``scale`` (see the module doc).

    Raises ``ImageError`` listing the inputs whose output names still clash.
    """
    def plain(path):
        return f"{os.path.splitext(os.path.basename(path))[0]}_x{scale}.png"

    def tagged(path):
        stem, ext = os.path.splitext(os.path.basename(path))
        return f"{stem}_{ext.lstrip('.').lower()}_x{scale}.png"

    groups = defaultdict(list)
    for path in paths:
        groups[plain(path).lower()].append(path)
    names = {}
    for group in groups.values():
        for path in group:
            names[path] = plain(path) if len(group) == 1 else tagged(path)
    final = defaultdict(list)
    for path, name in names.items():
        final[name.lower()].append(path)
    clashes = [group for group in final.values() if len(group) > 1]
    if clashes:
        listed = "; ".join(" and ".join(os.path.basename(p) for p in group) + f" -> {names[group[0]]}"
                           for group in clashes)
        raise ImageError(f"inputs would overwrite each other's output: {listed}; rename them or upscale "
                         "them into different --output_path folders")
    return names


ALPHA_REGION = 512  # LR pixels per side of the regions the alpha channel is upscaled in (bounded memory)


def upscale_alpha(alpha, scale):
    """HxW uint8 alpha -> (H*scale)x(W*scale) uint8: MATLAB-compatible bicubic in [0, 1], clipped, rounded;
    in regions of :data:`ALPHA_REGION` LR pixels with the kernel's context (:data:`CHROMA_CONTEXT`), so
    the memory is the uint8 output plus one region, and the pixels equal a whole-image resize."""
    h, w = alpha.shape
    out = np.empty((h * scale, w * scale), np.uint8)
    c = CHROMA_CONTEXT
    for y0 in range(0, h, ALPHA_REGION):
        y1 = min(y0 + ALPHA_REGION, h)
        for x0 in range(0, w, ALPHA_REGION):
            x1 = min(x0 + ALPHA_REGION, w)
            py0, px0 = max(y0 - c, 0), max(x0 - c, 0)
            up = imresize(alpha[py0:min(y1 + c, h), px0:min(x1 + c, w)].astype(np.float64) / 255.0, float(scale))
            oy, ox = (y0 - py0) * scale, (x0 - px0) * scale
            up = up[oy:oy + (y1 - y0) * scale, ox:ox + (x1 - x0) * scale]
            out[y0 * scale:y1 * scale, x0 * scale:x1 * scale] = np.floor(np.clip(up, 0.0, 1.0) * 255.0 + 0.5)
    return out


def _available_bytes():
    """MemAvailable of /proc/meminfo in bytes, or None where it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _may_have_alpha(path):
    """Whether the image's header declares an alpha channel or a transparency key (no pixels decoded)."""
    from PIL import Image  # pylint: disable=import-outside-toplevel
    try:
        with Image.open(path) as img:
            return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    except (OSError, ValueError, SyntaxError):
        return False


def check_output_memory(images, scale, tile_bytes):
    """Refuse (ImageError naming the image and sizes), before any image is run, an input whose 8-bit output
    and tile working set (``tile_bytes(LR pixels)``) exceed the memory available now (8 bytes per output
    pixel for an image with alpha: RGB, the upscaled alpha and the RGBA array written; 3 without)."""
    available = _available_bytes()
    if available is None:
        return
    sizes = []
    for path in images:
        try:
            (w, h), alpha = image_size(path), _may_have_alpha(path)
        except ImageError:
            continue  # unreadable: reported and skipped when its turn comes
        sizes.append((w * h * scale * scale * (8 if alpha else 3) + tile_bytes(w * h), (w, h), path))
    if not sizes:
        return
    need, (w, h), path = max(sizes)
    if need > available:
        raise ImageError(f"{os.path.basename(path)} ({w}x{h}) upscaled x{scale} is {w * scale}x{h * scale} pixels: "
                          f"{need / 2 ** 30:.1f} GiB with one tile, and {available / 2 ** 30:.1f} GiB is available; "
                          "cut it into parts or lower --max_tile_mem_gb")


def _input_images(src_path):
    """The image files to upscale: ``src_path`` itself, or the images of the folder ``src_path``."""
    if not src_path:
        raise UserError("pass --input_path: an image file or a folder of images to upscale")
    if os.path.isdir(src_path):
        images = list_images(src_path)
        if not images:
            raise ImageError(f"no images (.png, .jpg, .bmp, ...) in {src_path}")
        return images
    if os.path.isfile(src_path):
        return [src_path]
    raise InputNotFoundError(f"--input_path {src_path} does not exist")


def run_upscale(config, log=print):
    """Write ``<output_path>/<name>_x<s>.png`` for each input image; returns the written paths.

    ``config``: the loaded configuration; its sections (:func:`~src.engine.sections.upscale_sections`)
    are built here, once. Raises ``ImageError`` (after writing the others) when images of a folder
    could not be read.
    """
    request = upscale_sections(config)
    images = _input_images(request.input_path)
    source = resolve_path(config, request.model_file or select_checkpoint(config))
    net, scale, described = _model_for(request, source, log)
    out_dir = request.output_path
    targets = {path: os.path.join(out_dir, name) for path, name in output_names(images, scale).items()}
    inputs = {os.path.normcase(os.path.realpath(p)): p for p in images}
    overwritten = [p for p, t in targets.items() if os.path.normcase(os.path.realpath(t)) in inputs]
    if overwritten:
        raise ImageError(f"output would replace an input image: {', '.join(targets[p] for p in overwritten)}; "
                         "choose another --output_path")
    predictor = SRPredictor.configured(net, scale, request.inference)
    per_pixel, budget = peak_bytes_per_lr_pixel(net, scale), int(predictor.max_tile_mem_gb * 2 ** 30)
    check_output_memory(images, scale, lambda lr_pixels: min(budget, per_pixel * lr_pixels))
    os.makedirs(out_dir, exist_ok=True)
    written, skipped, with_alpha = [], [], 0
    for path in tqdm(images, desc=f"x{scale}", disable=len(images) == 1, unit="img"):
        try:
            rgb, alpha = read_image(path)
        except ImageError as exc:
            if len(images) == 1:
                raise
            log(f"skipped: {exc}")
            skipped.append(os.path.basename(path))
            continue
        sr = predictor.predict(rgb)
        if alpha is not None:
            with_alpha += 1
            write_png(targets[path], sr, alpha=upscale_alpha(alpha, scale))
        else:
            write_png(targets[path], sr)
        written.append(targets[path])
    alpha_note = f" ({with_alpha} RGBA: alpha upscaled with bicubic)" if with_alpha else ""
    log(f"wrote {len(written)} image(s){alpha_note} to {out_dir} with {described}")
    if skipped:
        raise ImageError(f"{len(skipped)} of {len(images)} input images could not be read and were skipped "
                         f"({', '.join(skipped)}); the other {len(written)} were written to {out_dir}")
    return written
