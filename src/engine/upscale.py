"""infer.py engine: upscale an image or a folder with a checkpoint, MindIR or ONNX file."""
import os

from tqdm import tqdm

from src.data.image_io import ImageError, list_images, read_rgb, write_png
from src.engine.inference import SRPredictor


def _model_for(config, log):
    """(network-like object, scale, description) for --file_name / --pre_trained / the shipped checkpoint."""
    from src.engine.evaluator import resolve_path, select_checkpoint  # pylint: disable=import-outside-toplevel
    source = config.file_name or select_checkpoint(config)
    source = resolve_path(config, source)
    if not os.path.isfile(source):
        raise FileNotFoundError(f"model file {source} does not exist; pass --file_name (.ckpt, .mindir, .onnx) "
                                "or --pre_trained")
    if source.lower().endswith(".ckpt"):
        from src.models.registry import config_options  # pylint: disable=import-outside-toplevel
        from src.weights.loader import load_float_and_quantized  # pylint: disable=import-outside-toplevel
        fp_net, q_net, _ = load_float_and_quantized(config.model, config.variant, config.scale, source,
                                                    config_options(config))
        net = q_net if q_net is not None else fp_net
        return net, config.scale, f"{config.model}-{config.variant} x{config.scale} checkpoint {source}"
    from src.engine.runners import open_exported  # pylint: disable=import-outside-toplevel
    runner = open_exported(source)
    if "scale" in config.cli_keys and runner.scale != config.scale:
        raise ValueError(f"{source} upscales x{runner.scale} but --scale is {config.scale}; drop --scale or pass "
                         f"--scale {runner.scale}")
    log(f"{source}: x{runner.scale}, {runner.n_colors}-channel input")
    return runner, runner.scale, source


def run_upscale(config, log=print):
    """Write ``<output_path>/<name>_x<s>.png`` for each input image; returns the written paths."""
    from src.engine.evaluator import resolve_path  # pylint: disable=import-outside-toplevel
    src_path = resolve_path(config, config.input_path)
    if not src_path:
        raise ValueError("pass --input_path: an image file or a folder of images to upscale")
    if os.path.isdir(src_path):
        images = list_images(src_path)
        if not images:
            raise ImageError(f"no images (.png, .jpg, .bmp, ...) in {src_path}")
    elif os.path.isfile(src_path):
        images = [src_path]
    else:
        raise FileNotFoundError(f"--input_path {src_path} does not exist")
    net, scale, described = _model_for(config, log)
    tile = config.tile_size
    predictor = SRPredictor(net, scale, tile, config.tile_overlap, config.self_ensemble, config.max_tile_mem_gb)
    out_dir = resolve_path(config, config.output_path)
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for path in tqdm(images, desc=f"x{scale}", disable=len(images) == 1, unit="img"):
        sr = predictor.predict(read_rgb(path))
        target = os.path.join(out_dir, f"{os.path.splitext(os.path.basename(path))[0]}_x{scale}.png")
        write_png(target, sr)
        written.append(target)
    log(f"wrote {len(written)} image(s) to {out_dir} with {described}")
    return written
