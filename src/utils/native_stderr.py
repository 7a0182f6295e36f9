"""Silencing what native libraries (TensorFlow, LiteRT) write straight to file descriptor 2."""
import contextlib
import os
import sys


@contextlib.contextmanager
def stderr_silenced(active=True):
    """File descriptor 2 to /dev/null inside the block, restored after it (also on an exception).

    C++ logging (TensorFlow's start-up lines, LiteRT's ``INFO: Created TensorFlow Lite XNNPACK
    delegate for CPU.``) bypasses ``sys.stderr``, so only redirecting the descriptor hides it.
    Errors still arrive: the libraries' Python bindings raise exceptions carrying their text.
    ``active=False`` makes the block a no-op.
    """
    if not active:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


__all__ = ["stderr_silenced"]


def import_tensorflow_quietly():
    """``import tensorflow`` without its C++ start-up lines (oneDNN notices, a CUDA probe on CPU-only
    machines), which it writes before reading any log level; they stay when ``TF_CPP_MIN_LOG_LEVEL``
    is 0 or 1 (logs asked for). Python-side warnings are set to ERROR. Raises ImportError when
    TensorFlow is not installed."""
    quiet = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3").strip() not in ("0", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with stderr_silenced(quiet):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
    if quiet:
        import logging  # pylint: disable=import-outside-toplevel
        tf.get_logger().setLevel(logging.ERROR)
    return tf
