"""ModelArts support: copy the data and checkpoint in from OBS before a run and the outputs out after it.

``moxing`` exists only on ModelArts; it is imported when ``enable_modelarts: True``, and its absence is
one line naming what is needed. :func:`moxing_wrapper` is applied to every entry script's engine by
:func:`model_utils.entry.run_entry`:

- before the run: ``--data_url`` -> ``--data_path`` (a folder), ``--checkpoint_url`` -> ``--pre_trained``
  (a file); each only when given;
- after the run (also after one that failed, so its logs reach OBS): ``--output_path`` and, for
  train.py, ``--ckpt_dir`` -> ``--train_url``/<folder name>, when ``--train_url`` is given.
"""
import functools
import os

from model_utils import local_adapter
from src.errors import UserError


def get_device_id():
    return local_adapter.get_device_id()


def get_device_num():
    return local_adapter.get_device_num()


def get_rank_id():
    return local_adapter.get_rank_id()


def get_job_id():
    return os.environ.get("JOB_ID", "default")


def _moxing():
    try:
        import moxing  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise UserError("--enable_modelarts True copies through OBS with the moxing package, which exists on "
                         "ModelArts only; run there or drop --enable_modelarts") from None
    return moxing


def _copy_folder(mox, src, dst, log):
    log(f"ModelArts: copying {src} -> {dst}")
    mox.file.copy_parallel(src, dst)


def moxing_wrapper(config, log=print):
    """Decorator for an engine ``run(config)``: the copies of the module docstring around it when
    ``config.enable_modelarts``; otherwise the engine as it is."""
    def decorator(run):
        if not config.get("enable_modelarts", False):
            return run

        @functools.wraps(run)
        def wrapped(*args, **kwargs):
            mox = _moxing()
            if config.get("data_url"):
                _copy_folder(mox, config.data_url, config.data_path, log)
            if config.get("checkpoint_url"):
                if not config.get("pre_trained"):
                    raise UserError("--checkpoint_url needs --pre_trained: the local file it is copied to")
                log(f"ModelArts: copying {config.checkpoint_url} -> {config.pre_trained}")
                os.makedirs(os.path.dirname(os.path.abspath(config.pre_trained)), exist_ok=True)
                mox.file.copy(config.checkpoint_url, config.pre_trained)
            try:
                return run(*args, **kwargs)
            finally:
                if config.get("train_url"):
                    for folder in (config.get("output_path"), config.get("ckpt_dir")):
                        if folder and os.path.isdir(folder):
                            _copy_folder(mox, folder, config.train_url.rstrip("/") + "/" +
                                         os.path.basename(os.path.normpath(folder)), log)
        return wrapped
    return decorator
