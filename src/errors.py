"""The error contract of the entry scripts.

A **user error** is a judgement of the user's input or environment, raised deliberately where that
input is read: :class:`UserError` (and its subclasses, e.g. ``CheckpointError``, ``ImageError``,
``ConfigError``) or an ``OSError`` the operating system raised about a file (it has ``errno``: a full
disk, a read-only folder, a missing file). Entry scripts print it as one line (:func:`error_line`) and
exit with 2. Anything else, a ``ValueError``, ``KeyError`` or ``TypeError`` included, is a defect:
the entry script shows its traceback and says it is a bug (exit 1), so a bug never passes for a bad
input. Every writer goes through ``src.utils.atomic``, so a failure leaves no partial file.

This module imports nothing of the project, so every module can raise these.
"""
import errno
import sys


class UserError(ValueError):
    """A user's input (option, file, image, folder, model) judged unusable; the message names it and says
    what to do. A ``ValueError`` so that code checking a value can be called from a library too."""


class InputNotFoundError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist (or is of the wrong kind); also a
    ``FileNotFoundError``."""


class SettingError(UserError):
    """A library settings object (``ReconConfig``, ``PaCConfig``, ``CalibrationConfig``, ``QuantConfig``)
    refuses the value of one of its fields, in the library's terms (``field``, ``value``, ``requirement``:
    what the value must be). Where the object was filled from the configuration,
    :func:`src.utils.config_fill.fill_section` says it again with the option's name (``--<prefix><field>``)."""

    def __init__(self, owner, field, value, requirement):
        super().__init__(f"{owner}.{field} {value!r}: must be {requirement}")
        self.owner, self.field, self.value, self.requirement = owner, field, value, requirement


USER_ERRORS = (UserError, OSError)  # what an entry script catches; it re-raises those is_user_error rejects


def is_user_error(exc):
    """True for a :class:`UserError` and for an ``OSError`` the system raised about a file or device (it
    carries ``errno``); False for everything else, which is a defect."""
    return isinstance(exc, UserError) or (isinstance(exc, OSError) and exc.errno is not None)


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


def print_user_error(exc, action=None, stream=None):
    """The entry points' handling of a caught exception: a user error (:func:`is_user_error`) is printed as
    one line ``error: [<action>: ]<message>`` (``action`` prefixes an operating-system error only, e.g.
    ``cannot write X``) on ``stream`` (default stderr) and 2 is returned, the exit code; anything else is
    raised again (a defect keeps its traceback)."""
    if not is_user_error(exc):
        raise exc
    prefix = f"{action}: " if action and isinstance(exc, OSError) and not isinstance(exc, UserError) else ""
    print(f"error: {prefix}{error_line(exc)}", file=stream or sys.stderr)
    return 2


class Interrupted(Exception):
    """The run was stopped by a signal after writing what lets it continue; ``exit_code`` is 128 + the
    signal number (130 for Ctrl-C, 143 for SIGTERM), the message says how to continue."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.exit_code = 128 + int(signum)

