"""Zoomed crops side by side: what quantization does to the pictures, with each crop's PSNR.

For each image (``<set>/<name>``, resolved under ``--data_path`` like an evaluation set) the HR
image and its LR are made with the evaluation protocol (:func:`src.data.eval_sets.load_pair`: HR
cropped to a multiple of lcm(gt_mod, scale), LR by the MATLAB-compatible bicubic). Columns:

- ``HR``; ``bicubic``: MATLAB-bicubic upscaling of the LR (:func:`src.data.imresize.imresize`);
- ``float``: the ``--pre_trained`` float checkpoint;
- one column per ``--methods`` entry: the float checkpoint calibrated now, exactly as
  ``eval.py --quant_method <method>`` does (:func:`src.engine.quant_eval.build_quantized`, its
  settings from :func:`src.engine.sections.quantization_of`; ``--save_quant_dir`` keeps each
  calibrated model for reuse);
- one column per ``--quant_ckpts`` entry: a calibrated checkpoint as stored (no recalibration).

Every model runs through :class:`~src.engine.inference.SRPredictor` with the run's inference
settings (tiling, self-ensemble) and its uint8 output is scored, as in evaluation.

The crop (``crop_size`` HR pixels square) is a given box or picked per image:

- ``spread`` (default): the window inside the scored area (``shave`` pixels off each border)
  where the float and quantized outputs differ most, i.e. with the largest spread (max - min)
  of their mean squared error against HR on the metric channel. This is where quantization is
  visible; the crop PSNRs are therefore not representative of the whole image (the JSON report
  gives the whole-image PSNRs too). The score is symmetric in the methods: no method is favoured.
- ``detail``: the window with the most HR gradient energy (sum of squared finite differences of
  the metric channel), chosen without looking at any output.

Each crop is labelled with its PSNR and, in parentheses, the whole image's (dB, the protocol's
``metric_channel`` and shave, :func:`src.metrics.calculate_psnr`, as the evaluator measures it).
The crop's PSNR is measured on the crop; where the box reaches into the ``shave`` border, that
part is left out (:func:`scored_region`), so a box covering the whole image gives the evaluator's
PSNR. Crops are zoomed by pixel repetition (nearest neighbour: no interpolation hides or adds artefacts).
"""
import json
import os
import time
from dataclasses import dataclass, field

import numpy as np

from src.data.eval_sets import load_pair, resolve_eval_set
from src.data.imresize import imresize
from src.data.transforms import rgb_to_y
from src.engine.inference import SRPredictor
from src.engine.quant_eval import build_quantized
from src.engine.sections import evaluation_sections, quantization_of, shave_pixels
from src.metrics import calculate_psnr
from src.paths import resolve_path, select_checkpoint
from src.utils.atomic import atomic_target
from src.weights.loader import load_for_inference, load_quantized, quant_config_of
from src.errors import UserError
from src.engine.script_flags import CROP_FLAGS

DEFAULT_METHODS = ("dbdc", "dbdc_pac", "dbdc_recon")
DEFAULT_IMAGES = ("Set14/comic", "Set14/zebra", "DIV2K_valid_crop256/0803", "DIV2K_valid_crop256/0846")
SELECTIONS = ("spread", "detail")
DISPLAY_NAMES = {"minmax": "MinMax", "percentile": "Percentile", "omse": "OMSE", "dbdc": "DBDC",
                 "dbdc_pac": "DBDC+PaC", "dbdc_recon": "DBDC+recon"}
FLAGS = tuple(CROP_FLAGS)  # the script's own flags, declared in src/engine/script_flags.py

GAP = 4  # white pixels between cells
FONT_PX = 13
LINE_PX = 16
STRIP = 2 * LINE_PX + 4  # label strip under each crop: two lines of text


@dataclass(frozen=True)
class CropOptions:
    """The figure's options (script flags beside eval.py's): ``methods`` (``--quant_method`` values
    calibrated now), ``quant_ckpts`` (calibrated checkpoints), ``labels`` (one per quantized
    column, methods first; empty: the display names), ``images`` (``(set, name)`` pairs),
    ``boxes`` (one ``(x, y, w, h)`` HR-pixel box per image, or empty: picked by ``select``),
    ``crop_size`` (HR pixels, square, for picked boxes), ``zoom`` (integer pixel repetition),
    ``figure`` (PNG path; empty: under ``output_path``), ``save_quant_dir`` (folder for the
    calibrated checkpoints; empty: not saved)."""
    methods: tuple
    quant_ckpts: tuple = ()
    labels: tuple = ()
    images: tuple = tuple(tuple(s.split("/")) for s in DEFAULT_IMAGES)
    boxes: tuple = ()
    crop_size: int = 48
    zoom: int = 3
    select: str = "spread"
    figure: str = ""
    save_quant_dir: str = ""


def _items(text):
    return [t.strip() for t in str(text).split(",") if t.strip()]


def _int(raw, flag, default, low, high):
    text = raw.get(flag)
    if text is None:
        return default
    try:
        value = int(str(text).strip())
    except ValueError:
        raise UserError(f"--{flag} {text!r} is not an integer; give one between {low} and {high}") from None
    if not low <= value <= high:
        raise UserError(f"--{flag} {value} is out of range; give one between {low} and {high}")
    return value


def _images(text):
    specs = []
    for item in _items(text):
        set_name, _, name = item.rpartition("/")
        if not set_name or not name:
            raise UserError(f"--images {item!r}: give <set>/<image name>, e.g. Set14/comic or "
                             "DIV2K_valid_crop256/0801 (sets under <data_path>/benchmark)")
        specs.append((set_name, name))
    if not specs:
        raise UserError("--images is empty; give <set>/<image name>,... e.g. Set14/comic")
    return tuple(specs)


def _boxes(text, count):
    boxes = []
    for item in str(text).split(";"):
        parts = [p.strip() for p in item.split(",")]
        if len(parts) != 4 or not all(p.isdigit() for p in parts) or int(parts[2]) < 1 or int(parts[3]) < 1:
            raise UserError(f"--box {item.strip()!r}: give x,y,w,h in HR pixels (x, y >= 0; w, h >= 1), "
                             "one box for every image or one per image separated by ';'")
        boxes.append(tuple(int(p) for p in parts))
    if len(boxes) not in (1, count):
        raise UserError(f"--box gives {len(boxes)} boxes for {count} images; give one box or one per image")
    if len({b[2:] for b in boxes}) > 1:
        raise UserError("--box: the boxes differ in size; give boxes of one size (the grid's cells are equal)")
    return tuple(boxes) * (count if len(boxes) == 1 else 1)


def parse_crop_options(raw, known_methods):
    """:class:`CropOptions` from ``raw`` (``{flag: text or None}`` for :data:`FLAGS`, as given on the
    command line). ``known_methods``: the accepted ``--quant_method`` values. Raises ``ValueError``
    with one line naming the flag and the fix."""
    ckpts = tuple(_items(raw.get("quant_ckpts") or ""))
    methods = tuple(_items(raw["methods"])) if raw.get("methods") is not None else \
        (() if ckpts else DEFAULT_METHODS)
    for method in methods:
        if method not in known_methods:
            raise UserError(f"--methods {method}: not a quantization method; choose from {', '.join(known_methods)}")
    if len(set(methods)) < len(methods):
        raise UserError(f"--methods {','.join(methods)} lists a method twice; give each once")
    if not methods and not ckpts:
        raise UserError("nothing to compare: give --methods (calibrated now) and/or --quant_ckpts (calibrated)")
    labels = tuple(_items(raw["labels"])) if raw.get("labels") else ()
    if len(set(labels)) < len(labels):
        raise UserError(f"--labels {','.join(labels)} gives a label twice; give each column its own")
    if labels and len(labels) != len(methods) + len(ckpts):
        raise UserError(f"--labels gives {len(labels)} labels for {len(methods) + len(ckpts)} quantized columns "
                         "(--methods, then --quant_ckpts); give one per column")
    images = _images(raw["images"]) if raw.get("images") is not None else CropOptions(()).images
    select = raw.get("select") or "spread"
    if select not in SELECTIONS:
        raise UserError(f"--select {select!r} is not one of {', '.join(SELECTIONS)}")
    figure = raw.get("figure") or ""
    if figure and not figure.lower().endswith(".png"):
        raise UserError(f"--figure {figure}: the figure is a PNG; give a file name ending in .png")
    return CropOptions(methods, ckpts, labels, images, _boxes(raw["box"], len(images)) if raw.get("box") else (),
                       _int(raw, "crop_size", 48, 4, 512), _int(raw, "zoom", 3, 1, 16), select,
                       figure, raw.get("save_quant_dir") or "")


def scored_region(box, shape, shave):
    """``(x0, y0, x1, y1)``: the part of ``box`` (``(x, y, w, h)``, HR pixels) that PSNR scores in
    an image of ``shape`` (H, W, ...) whose ``shave`` border pixels are not scored. Raises
    ``ValueError`` when the box leaves the image or lies entirely in the border."""
    x, y, w, h = box
    height, width = shape[:2]
    if x + w > width or y + h > height:
        raise UserError(f"--box {x},{y},{w},{h} leaves the {width}x{height} HR image (after the protocol's crop "
                         "to a multiple of the scale); give a box inside it")
    x0, y0 = max(x, shave), max(y, shave)
    x1, y1 = min(x + w, width - shave), min(y + h, height - shave)
    if x1 <= x0 or y1 <= y0:
        raise UserError(f"--box {x},{y},{w},{h} lies in the {shave}-pixel border that PSNR leaves out; "
                         "move it inwards")
    return x0, y0, x1, y1


def crop_psnr(sr, hr, box, shave, channel="y"):
    """``(PSNR in dB, scored region)`` of ``sr`` against ``hr`` (HxWx3 uint8 RGB) on ``box``
    (``(x, y, w, h)``), without the ``shave`` border (see :func:`scored_region`), on ``channel``
    (``y``: BT.601 luma, ``rgb``) as :func:`src.metrics.calculate_psnr` (BasicSR) measures it."""
    x0, y0, x1, y1 = region = scored_region(box, hr.shape, shave)
    return calculate_psnr(sr[y0:y1, x0:x1], hr[y0:y1, x0:x1], 0, channel), region


def window_sums(values, size):
    """Sum of ``values`` (H x W) over every ``size`` x ``size`` window: an (H-size+1) x (W-size+1)
    array whose ``[i, j]`` is the window with top-left corner (row i, column j)."""
    c = np.pad(np.cumsum(np.cumsum(values, axis=0, dtype=np.float64), axis=1), ((1, 0), (1, 0)))
    return c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]


def _channels(img, channel):
    return rgb_to_y(img)[..., None] if channel == "y" else img.astype(np.float64)


def check_crop_fits(shape, size, shave, where):
    """Raise ``ValueError`` when a ``size`` square does not fit inside the scored area of an image
    of ``shape`` (``shave`` border pixels off each side); ``where`` names the image."""
    inner = (shape[0] - 2 * shave, shape[1] - 2 * shave)
    if min(inner) < size:
        raise UserError(f"--crop_size {size} does not fit {where}: its scored area is {inner[1]}x{inner[0]} "
                         f"pixels; give a smaller --crop_size")


def pick_box(hr, outputs, size, shave, select="spread", channel="y"):
    """``(x, y, size, size)``: the window inside the scored area of ``hr`` picked by ``select``
    (``spread``: largest max - min over ``outputs`` (SR images, HxWx3 uint8) of the window's squared
    error against ``hr``; ``detail``: largest HR gradient energy). See the module notes."""
    height, width = hr.shape[:2]
    check_crop_fits(hr.shape, size, shave, "the image")
    ref = _channels(hr[shave:height - shave, shave:width - shave], channel)
    if select == "detail":
        gy, gx = np.gradient(ref, axis=(0, 1))
        score = window_sums((gx ** 2 + gy ** 2).sum(axis=2), size)
    else:
        errors = np.stack([window_sums(((_channels(o[shave:height - shave, shave:width - shave], channel) - ref) ** 2)
                                       .sum(axis=2), size) for o in outputs])
        score = errors.max(axis=0) - errors.min(axis=0)
    row, col = np.unravel_index(int(np.argmax(score)), score.shape)
    return int(col) + shave, int(row) + shave, size, size


def zoom_crop(img, box, zoom):
    """The ``box`` (``(x, y, w, h)``) of ``img`` (HxWx3 uint8) enlarged ``zoom`` times by pixel repetition."""
    x, y, w, h = box
    return np.repeat(np.repeat(img[y:y + h, x:x + w], zoom, axis=0), zoom, axis=1)


def grid_size(rows, cols, cell_h, cell_w):
    """``(height, width)`` in pixels of a grid of ``rows`` x ``cols`` cells of ``cell_h`` x ``cell_w``
    (the zoomed crop), each with its label strip below, :data:`GAP` pixels apart."""
    return rows * (cell_h + STRIP) + (rows - 1) * GAP, cols * cell_w + (cols - 1) * GAP


def _fitted(draw, text, font, width):
    while text and draw.textlength(text, font=font) > width:
        text = text[:-2] + "~"
    return text


def compose_grid(cells):
    """One uint8 RGB image (size :func:`grid_size`) of ``cells``: rows of ``(crop, line1, line2)``
    with every crop (HxWx3 uint8) the same size; the two lines are drawn centred under the crop
    (Pillow's default font), shortened with ``~`` to fit."""
    from PIL import Image, ImageDraw, ImageFont  # pylint: disable=import-outside-toplevel
    cell_h, cell_w = cells[0][0][0].shape[:2]
    height, width = grid_size(len(cells), len(cells[0]), cell_h, cell_w)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=FONT_PX)
    for r, row in enumerate(cells):
        top = r * (cell_h + STRIP + GAP)
        for c, (crop, *lines) in enumerate(row):
            left = c * (cell_w + GAP)
            canvas.paste(Image.fromarray(np.ascontiguousarray(crop)), (left, top))
            for k, text in enumerate(lines):
                draw.text((left + cell_w // 2, top + cell_h + 2 + k * LINE_PX), _fitted(draw, text, font, cell_w - 2),
                          fill="black", font=font, anchor="ma")
    return np.asarray(canvas)


def load_images(evaluation, specs):
    """``[(label, lr, hr)]`` (uint8 HxWx3 RGB) of the ``(set, name)`` pairs ``specs`` with the evaluation
    protocol of ``evaluation`` (:class:`~src.engine.sections.Evaluation`). Raises
    ``DatasetNotFoundError`` for a missing set, ``ValueError`` for a missing image."""
    protocol, sets, images = evaluation.protocol, {}, []
    for set_name, name in specs:
        if set_name not in sets:
            sets[set_name] = resolve_eval_set(evaluation.data.data_path, set_name, protocol.scale)
        eval_set = sets[set_name]
        image = next((i for i in eval_set.images if i.name == name), None)
        if image is None:
            names = [i.name for i in eval_set.images]
            raise UserError(f"--images {set_name}/{name}: no image {name!r} in {eval_set.hr_dir}; it holds "
                             f"{', '.join(names[:12])}{' ...' if len(names) > 12 else ''}")
        lr, hr = load_pair(eval_set, image, protocol.scale, protocol.gt_mod, protocol.cache_dir)
        images.append((f"{set_name}/{name}", lr, hr))
    return images


@dataclass
class Column:
    """One column of the figure: its ``label``, where it came from (``source``: ``HR``, ``bicubic``,
    ``float``, a method or a checkpoint path), the quantization ``info`` (method, bits, calibration
    seconds; empty for unquantized columns) and its SR ``outputs`` (one uint8 image per row)."""
    label: str
    source: str
    outputs: list
    info: dict = field(default_factory=dict)


def _predict(net, evaluation, images):
    predictor = SRPredictor.configured(net, evaluation.model.scale, evaluation.inference)
    return [predictor.predict(lr) for _, lr, _ in images]


def _quantized_columns(config, evaluation, options, images, log):
    """The columns of ``options.methods`` (calibrated from the float ``--pre_trained`` as eval.py
    does, saved under ``save_quant_dir`` when given) and of ``options.quant_ckpts``."""
    model, ckpt, columns = evaluation.model, select_checkpoint(config), []
    labels = list(options.labels) or [DISPLAY_NAMES.get(m, m) for m in options.methods] + \
        [""] * len(options.quant_ckpts)
    for method, label in zip(options.methods, labels):
        target = os.path.join(options.save_quant_dir, f"{model.model}_{model.variant}_x{model.scale}_w{config.w_bit}"
                              f"a{config.a_bit}_{method}.ckpt") if options.save_quant_dir else ""
        quant = quantization_of(config.replace(quant_method=method, save_quant_ckpt=target))
        _, q_net, info = build_quantized(model, quant, ckpt, log)
        columns.append(Column(label, method, _predict(q_net, evaluation, images), info))
    for path, label in zip(options.quant_ckpts, labels[len(options.methods):]):
        q_net, meta = load_quantized(model.model, model.variant, model.scale, path, model.option_dict())
        qcfg, method = quant_config_of(meta), str(meta.get("quant_method", "?"))
        info = {"method": method, "w_bit": qcfg.w_bit, "a_bit": qcfg.a_bit, "from_checkpoint": True}
        columns.append(Column(label or DISPLAY_NAMES.get(method, method), path, _predict(q_net, evaluation, images),
                              info))
        log(f"{path}: calibrated {method} W{qcfg.w_bit}A{qcfg.a_bit} checkpoint")
    if len({(c.info["w_bit"], c.info["a_bit"]) for c in columns}) > 1:  # mixed bit widths: say so on the figure
        for c in columns:
            c.label += f" W{c.info['w_bit']}A{c.info['a_bit']}"
    for i, c in enumerate(columns):  # e.g. two checkpoints of one method: the report is keyed by label
        c.label += f" #{i + 1}" if [d.label for d in columns].count(c.label) > 1 else ""
    return columns


def figure_rows(images, columns, boxes, protocol):
    """``(cells, records)``: the grid cells (:func:`compose_grid`; HR, then one per :class:`Column`,
    zoomed by ``protocol.zoom`` and labelled with the column and "crop PSNR (whole-image PSNR) dB")
    and one report record per image (box, scored region, crop and whole-image PSNRs by column
    label). ``images``: ``[(label, lr, hr)]``; ``boxes``: one ``(x, y, w, h)`` per image;
    ``protocol``: ``shave``, ``channel`` and ``zoom`` attributes."""
    cells, records = [], []
    for row, ((name, _, hr), box) in enumerate(zip(images, boxes)):
        record = {"image": name, "box": list(box), "crop_psnr": {}, "image_psnr": {}}
        line = [(zoom_crop(hr, box, protocol.zoom), "HR", name.rpartition("/")[2])]
        for column in columns:
            sr = column.outputs[row]
            psnr, region = crop_psnr(sr, hr, box, protocol.shave, protocol.channel)
            whole = calculate_psnr(sr, hr, protocol.shave, protocol.channel)
            record["scored_region"] = list(region)
            record["crop_psnr"][column.label] = round(psnr, 4)
            record["image_psnr"][column.label] = round(whole, 4)
            line.append((zoom_crop(sr, box, protocol.zoom), column.label, f"{psnr:.2f} ({whole:.2f}) dB"))
        cells.append(line)
        records.append(record)
    return cells, records


@dataclass(frozen=True)
class _Scoring:
    shave: int
    channel: str
    zoom: int


def _default_figure(evaluation, config):
    model = evaluation.model
    return os.path.join(evaluation.outputs.output_path,
                        f"crops_{model.model}_{model.variant}_x{model.scale}_w{config.w_bit}a{config.a_bit}.png")


def _write(figure, grid, report):
    """The PNG (smallest lossless encoding Pillow finds) and its JSON report beside it, each atomically."""
    from PIL import Image  # pylint: disable=import-outside-toplevel
    with atomic_target(figure, suffix=".png") as tmp:
        Image.fromarray(grid).save(tmp, format="PNG", optimize=True)
    with atomic_target(os.path.splitext(figure)[0] + ".json") as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)


def run_crop_figure(config, options, log=print):
    """Write the crop figure of ``options`` (:class:`CropOptions`) for the model and checkpoint of
    ``config`` (eval.py's configuration; its ``w_bit``/``a_bit`` and calibration options apply to
    every method) and its JSON report; returns the report. Inputs are checked (images, boxes, the
    float checkpoint) before any calibration; user errors are ``ValueError``/``OSError``."""
    start = time.time()
    evaluation = evaluation_sections(config)
    scoring = _Scoring(shave_pixels(evaluation.protocol), evaluation.protocol.metric_channel, options.zoom)
    images = load_images(evaluation, options.images)
    for (name, _, hr), box in zip(images, options.boxes or [None] * len(images)):
        if box:
            scored_region(box, hr.shape, scoring.shave)
        else:
            check_crop_fits(hr.shape, options.crop_size, scoring.shave, name)
    ckpt = select_checkpoint(config)
    fp_net, meta = load_for_inference(evaluation.model.model, evaluation.model.variant, evaluation.model.scale, ckpt,
                                      evaluation.model.option_dict())
    if options.methods and quant_config_of(meta) is not None:
        raise UserError(f"--pre_trained {ckpt} is a calibrated checkpoint; --methods calibrate the float one: "
                         "pass the float checkpoint, or give calibrated ones with --quant_ckpts")
    scale = evaluation.model.scale
    columns = [Column("bicubic", "bicubic", [imresize(lr, float(scale)) for _, lr, _ in images]),
               Column("float", ckpt, _predict(fp_net, evaluation, images))]
    columns += _quantized_columns(config, evaluation, options, images, log)
    boxes = options.boxes or [pick_box(hr, [c.outputs[i] for c in columns[1:]], options.crop_size, scoring.shave,
                                       options.select, scoring.channel) for i, (_, _, hr) in enumerate(images)]
    cells, records = figure_rows(images, columns, boxes, scoring)
    figure = resolve_path(config, options.figure) if options.figure else _default_figure(evaluation, config)
    model = evaluation.model
    report = {"figure": options.figure or figure, "model": model.model, "variant": model.variant, "scale": scale,
              "pre_trained": ckpt, "select": "box" if options.boxes else options.select, "zoom": options.zoom,
              "protocol": {"metric_channel": scoring.channel, "shave": scoring.shave},
              "columns": [{"label": c.label, "source": c.source, **c.info} for c in columns], "images": records,
              "seconds": round(time.time() - start, 1)}
    _write(figure, compose_grid(cells), report)
    for r in records:
        log(f"{r['image']} box {','.join(map(str, r['box']))}: " +
            ", ".join(f"{k} {v:.2f}" for k, v in r["crop_psnr"].items()) + " dB")
    log(f"wrote {figure} ({os.path.getsize(figure) // 1024} KB) and its .json in {report['seconds']:.1f} s")
    return report


__all__ = ["CropOptions", "parse_crop_options", "run_crop_figure", "crop_psnr", "scored_region", "pick_box",
           "window_sums", "zoom_crop", "grid_size", "compose_grid", "figure_rows", "load_images", "FLAGS",
           "DEFAULT_METHODS", "DEFAULT_IMAGES"]
