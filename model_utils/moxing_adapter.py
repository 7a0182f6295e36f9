"""ModelArts support (optional): copy data/outputs between OBS and the local cache.

``moxing`` exists only on ModelArts; it is imported lazily so that local runs
never need it. Enabled by ``enable_modelarts: True`` in the config.
"""
import functools
import os

from model_utils import local_adapter


def get_device_id():
    return local_adapter.get_device_id()


def get_device_num():
    return local_adapter.get_device_num()


def get_rank_id():
    return local_adapter.get_rank_id()


def get_job_id():
    return os.environ.get("JOB_ID", "default")


def _sync(src, dst):
    import moxing as mox  # pylint: disable=import-outside-toplevel
    mox.file.copy_parallel(src, dst)


def moxing_wrapper(config, pre_process=None, post_process=None):
    """Decorator: copy ``data_url``/``checkpoint_url`` in, run, copy ``output_path`` out to ``train_url``."""
    def decorator(run):
        @functools.wraps(run)
        def wrapped(*args, **kwargs):
            if config.get("enable_modelarts", False):
                if config.get("data_url"):
                    _sync(config.data_url, config.data_path)
                if config.get("checkpoint_url"):
                    _sync(config.checkpoint_url, config.load_path)
                if pre_process:
                    pre_process()
            result = run(*args, **kwargs)
            if config.get("enable_modelarts", False):
                if post_process:
                    post_process()
                if config.get("train_url"):
                    _sync(config.output_path, config.train_url)
            return result
        return wrapped
    return decorator
