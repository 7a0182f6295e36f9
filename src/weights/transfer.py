"""Initialise a model from a checkpoint of the same family at another scale.

Used to start x4 training from an x2 checkpoint (as SESR does): every tensor whose
name and shape match is copied; the rest (the scale-dependent output layer) keep
their initialisation. Returns what was copied and skipped so callers can report it.
"""
from mindspore import Parameter, Tensor
import mindspore as ms

from src.weights.checkpoint import CheckpointError, read_checkpoint


def transfer_weights(net, ckpt_path):
    """Copy matching tensors from ``ckpt_path`` into ``net``.

    Returns (copied, kept): names of the model's tensors taken from the checkpoint,
    and of those left at their initialisation (missing or differently shaped there).
    """
    params, meta = read_checkpoint(ckpt_path)
    model = net.spec.model if net.spec else None
    if "model" in meta and model and meta["model"] != model:
        raise CheckpointError(f"{ckpt_path} holds a '{meta['model']}' model, cannot initialise '{model}' from it")
    own = {p.name: p for p in net.get_parameters()}
    copied, skipped = [], []
    for name, param in own.items():
        if name in params and tuple(params[name].shape) == tuple(param.shape):
            copied.append(name)
        else:
            skipped.append(name)
    if not copied:
        raise CheckpointError(f"no tensor of {ckpt_path} fits {model}: names or shapes all differ")
    ms.load_param_into_net(net, {k: Parameter(Tensor(params[k]), name=k) for k in copied}, strict_load=False)
    return copied, skipped
