"""Where configured files are: relative paths, the shipped checkpoints, the checkpoint a run uses.

Shared by every engine (evaluation, training, export, upscaling); it imports nothing of them,
so :mod:`src.export` and :mod:`src.engine` both read paths here.
"""
import os

from src.weights.checkpoint import CheckpointError

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def locate(path, config_path, typed=False):
    """A relative ``path`` as given (from the working directory) when it was ``typed`` on the command line or
    exists from the working directory, else relative to the folder of the YAML file ``config_path`` it came
    from; presets in the project's ``configs/`` count as living in the project root (so their
    ``pretrained/...`` and ``./outputs/...`` mean the project's)."""
    if not path or os.path.isabs(path) or typed or os.path.exists(path):
        return path
    base = os.path.dirname(os.path.abspath(config_path)) if config_path else os.getcwd()
    if base == os.path.join(PROJECT_ROOT, "configs"):
        base = PROJECT_ROOT
    return os.path.normpath(os.path.join(base, path))


def resolve_path(config, path):
    """``path`` of the configuration ``config`` located as :func:`locate` says (typed: the value of a key
    set on the command line)."""
    return locate(path, config.path, any(config.get(key) == path for key in getattr(config, "cli_keys", ())))


def shipped_checkpoint(config):
    """Path of the project's own checkpoint for model/variant/scale under ``pretrained_dir``."""
    name = f"{config.model}_{config.variant}_x{config.scale}.ckpt"
    return os.path.join(resolve_path(config, config.pretrained_dir), name)


def select_checkpoint(config):
    """``--pre_trained``, else the shipped checkpoint of model/variant/scale.

    Raises :class:`~src.weights.checkpoint.CheckpointError` naming the shipped checkpoints of the
    scale when neither is there."""
    if config.pre_trained:
        return config.pre_trained
    shipped = shipped_checkpoint(config)
    if os.path.isfile(shipped):
        return shipped
    folder = os.path.dirname(shipped)
    others = sorted(f for f in os.listdir(folder) if f.endswith(f"_x{config.scale}.ckpt")) if os.path.isdir(folder) else []
    hint = f" (shipped for x{config.scale}: {', '.join(others)}; pick one with --model/--variant)" if others else ""
    raise CheckpointError(
        f"no --pre_trained given and no shipped checkpoint {shipped} for {config.model}-{config.variant} "
        f"x{config.scale}{hint}; pass --pre_trained FILE.ckpt (convert PyTorch weights with "
        "scripts/convert_torch_weights.py)")
