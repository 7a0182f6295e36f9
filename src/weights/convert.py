"""Published float weights to this project's networks: a PyTorch ``.pth`` (read without torch, no pickled
code run), a float ``.tflite`` or a Keras SavedModel folder (the network recognised from its conv chain,
checked against the source on two test images). Used by ``scripts/convert_weights.py`` and export.py's
phone path; the reading itself is :mod:`src.weights.torch_pickle` / :mod:`src.weights.tf_import`.
"""
import os

from src.models import create_model
from src.weights.checkpoint import CheckpointError
from src.weights import tf_import
from src.weights.torch_import import convert_torch_state_dict
from src.weights.torch_pickle import load_torch_weights


def is_tf_source(path):
    """A SavedModel folder or a ``.tflite`` file (else a ``.pth``)."""
    return os.path.isdir(path) or str(path).lower().endswith(".tflite")


def is_convertible(path):
    """Whether ``path`` is weights :func:`convert_source` reads (``.pth``/``.pt``/``.tflite``/SavedModel)."""
    return bool(path) and (is_tf_source(path) or str(path).lower().endswith((".pth", ".pt")))


def convert_torch(src, model, variant, scale, key="auto"):
    """``(net, params {name: array}, notes)`` of the ``.pth`` state dict ``src`` for ``model``-``variant``
    x``scale`` (CheckpointError when model or scale is missing, or the tensors do not fit)."""
    missing = [f"--{k}" for k, v in (("model", model), ("scale", scale)) if v is None]
    if missing:
        raise CheckpointError(f"a .pth file does not say which network it is: pass {' and '.join(missing)}")
    net = create_model(model, variant, scale)
    weights = load_torch_weights(src, key=key)
    return net, convert_torch_state_dict(net, weights.state_dict), list(weights.notes)


def convert_tf(src, model=None, variant=None, scale=None, pixel_range="auto"):
    """``(net, params, notes)`` of a float ``.tflite`` / SavedModel ``src``; ``model``/``variant``/``scale``,
    when given, must match what its convs say (CheckpointError naming both); the converted network must
    give the source's output within ``tf_import.MAX_IMPORT_DIFF`` of the 0..1 range on two test images."""
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    source = tf_import.open_tf_source(src)
    found = tf_import.guess_architecture(source)
    for key, given, value in zip(("model", "variant", "scale"), (model, variant, scale), found):
        if given is not None and str(given).lower() != str(value).lower():
            raise CheckpointError(f"{src} is {found[0]}-{found[1]} x{found[2]} (from its convs) but --{key} is {given}; "
                                  f"drop --{key} or pass --{key} {value}")
    net = create_model(*found)
    net.set_train(False)
    range_used, range_words = tf_import.source_pixel_range(source, found[2], pixel_range)
    params = tf_import.convert_tf_source(net, source, range_used)
    ms.load_param_into_net(net, {k: ms.Parameter(ms.Tensor(v), name=k) for k, v in params.items()}, strict_load=True)
    diff = tf_import.max_import_diff(lambda x: net(ms.Tensor(x)).asnumpy(), source, range_used,
                                     tf_import.check_images(net.n_colors))
    if diff > tf_import.MAX_IMPORT_DIFF:
        raise CheckpointError(f"the converted {found[0]}-{found[1]} x{found[2]} differs from {src} by {diff:.3g} of "
                              f"the 0..1 range (allowed {tf_import.MAX_IMPORT_DIFF:g}): the file computes something else")
    notes = [f"{src}: {source.kind}, {found[0]}-{found[1]} x{found[2]} from its {len(source.convs)} convs; {range_words}",
             f"checked: the checkpoint's output equals the source's within {diff:.2e} of the 0..1 range on two "
             "test images"]
    return net, params, notes


def convert_source(src, model=None, variant=None, scale=None, key="auto", pixel_range="auto"):
    """``(net, params, notes)`` of any source :func:`is_convertible` accepts (see the module docstring)."""
    if not os.path.exists(src):
        raise CheckpointError(f"weights file not found: {src}")
    if is_tf_source(src):
        return convert_tf(src, model, variant, scale, pixel_range)
    if pixel_range != "auto":
        raise CheckpointError("--pixel_range applies to .tflite files and SavedModel folders only; drop it")
    return convert_torch(src, model, variant, scale, key)
