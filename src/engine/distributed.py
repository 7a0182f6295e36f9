"""Data-parallel setup for ``msrun`` (or any launcher that sets MindSpore's cluster variables).

``msrun --worker_num=N --local_worker_num=N --master_addr=127.0.0.1 train.py ...``
starts N processes; each calls :func:`init_distributed`, which initialises the
collective backend and MindSpore's data-parallel context (gradients averaged over
workers). A plain ``python train.py`` is a single worker: rank 0 of 1.
"""
import hashlib
import os

import numpy as np


def launched_workers():
    """Number of workers the launcher started (1 without msrun)."""
    value = os.environ.get("MS_WORKER_NUM", "")
    return int(value) if value.isdigit() else 1


def init_distributed():
    """``(rank, world)``; initialises communication when more than one worker was launched."""
    if launched_workers() <= 1:
        return 0, 1
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    from mindspore.communication import get_group_size, get_rank, init  # pylint: disable=import-outside-toplevel
    init()
    world = get_group_size()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                 device_num=world)
    return get_rank(), world


def parameter_digest(net):
    """SHA-256 (first 16 hex digits) of every parameter's float32 bytes, in name order."""
    digest = hashlib.sha256()
    for param in sorted(net.get_parameters(), key=lambda p: p.name):
        digest.update(param.name.encode())
        digest.update(np.ascontiguousarray(param.data.asnumpy(), dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]
