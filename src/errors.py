"""Errors caused by user input or the environment; entry scripts print them as one line and exit 2.

``OSError`` is included: a full disk (``ENOSPC``), a read-only file system, a path component
that is a file, ... are reported by :func:`error_line` as one line naming the file and what
to do. Every writer goes through ``src.utils.atomic``, so such a failure leaves no partial file.
"""
import errno

from src.data.eval_sets import DatasetNotFoundError
from src.data.image_io import ImageError
from src.weights.checkpoint import CheckpointError
from src.weights.torch_pickle import UnsafeCheckpointError

# model_utils' ConfigError and OutputPathError are ValueErrors (src does not import model_utils)
USER_ERRORS = (CheckpointError, DatasetNotFoundError, ImageError, UnsafeCheckpointError, FileNotFoundError, ValueError,
               OSError)

_OS_HINTS = {
    errno.ENOSPC: "the disk is full; free space or write somewhere else",
    errno.EFBIG: "the file is larger than the file system or a file size limit (ulimit -f) allows; free space or "
                 "write somewhere else",
    errno.EDQUOT: "the disk quota is used up; free space or write somewhere else",
    errno.EROFS: "the file system is read-only; write somewhere else",
    errno.EACCES: "no permission; write somewhere else or fix the permissions",
    errno.EPERM: "not permitted; write somewhere else or fix the permissions",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.EISDIR: "it is a folder, not a file; give a file name",
    errno.EEXIST: "a file of that name is in the way; choose another path",
    errno.ENAMETOOLONG: "the name is too long; choose a shorter path",
}


MAX_LINE = 600  # characters of one error line: a message quoting a huge value stays one readable line


def error_line(exc):
    """One line for a user error: the message with line breaks folded; an ``OSError`` raised by the
    operating system (it has ``errno``) becomes ``<what failed>: <file>; <what to do>``."""
    if isinstance(exc, OSError) and exc.errno is not None and exc.strerror:
        target = f": {exc.filename}" if exc.filename else ""
        if exc.filename2:
            target += f" -> {exc.filename2}"
        hint = _OS_HINTS.get(exc.errno)
        text = f"{exc.strerror}{target}" + (f"; {hint}" if hint else "")
    else:
        text = str(exc) or type(exc).__name__
    text = " ".join(text.split())
    return text if len(text) <= MAX_LINE else text[:MAX_LINE] + f"... ({len(text)} characters; cut)"


class Interrupted(Exception):
    """The run was stopped by a signal after writing what lets it continue; ``exit_code`` is 128 + the
    signal number (130 for Ctrl-C, 143 for SIGTERM), the message says how to continue."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.exit_code = 128 + int(signum)

