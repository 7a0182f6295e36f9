"""Build the model a checkpoint was saved from and return its deploy form.

Checkpoints record ``form`` (train/deploy) and the family options
(``n_colors``, ``linear_block_type``, ...). A training-form checkpoint (e.g. a
collapsed-SESR or dual-stream ETDS run) is loaded into the training form and
converted, so evaluation and export always run the deploy form.
"""
from src.models.registry import OPTION_KEYS, create_model, to_deploy
from src.weights.checkpoint import load_into, read_checkpoint


def load_for_inference(model, variant, scale, ckpt_path, options=None):
    """Return ``(deploy_net, meta)`` for ``ckpt_path``; the checkpoint's own options win."""
    _, meta = read_checkpoint(ckpt_path)
    opts = dict(options or {})
    opts.update({k: meta[k] for k in OPTION_KEYS if k in meta})
    form = meta.get("form", "deploy")
    net = create_model(model, variant, scale, form=form if form in ("train", "deploy") else "deploy", **opts)
    load_into(net, ckpt_path)
    return to_deploy(net), meta
