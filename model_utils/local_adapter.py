"""Device/rank information for local (non-ModelArts) runs, read from the environment.

Understands ``msrun`` (MS_NODE_ID / MS_WORKER_NUM), OpenMPI and the classic
``DEVICE_ID`` / ``RANK_ID`` / ``RANK_SIZE`` variables; defaults to a single process.
"""
import os


def _first_int(names, default):
    for name in names:
        value = os.environ.get(name)
        if value not in (None, "") and value.lstrip("-").isdigit():
            return int(value)
    return default


def get_device_id():
    return _first_int(("DEVICE_ID",), 0)


def get_device_num():
    return _first_int(("RANK_SIZE", "MS_WORKER_NUM", "OMPI_COMM_WORLD_SIZE"), 1)


def get_rank_id():
    return _first_int(("RANK_ID", "MS_NODE_ID", "OMPI_COMM_WORLD_RANK"), 0)


def get_job_id():
    return "Local Job"
