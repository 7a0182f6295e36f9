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
