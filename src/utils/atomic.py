"""Atomic file writes: write to a temporary file beside the target, then rename."""
import contextlib
import os


@contextlib.contextmanager
def atomic_target(path, suffix=""):
    """Yield a temporary path next to ``path``; on success it replaces ``path``.

    A crash or exception leaves any existing ``path`` untouched and removes the
    temporary file, so readers never see a partial file. ``suffix`` keeps an
    extension some writers insist on (``.ckpt``, ``.png``).
    """
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
