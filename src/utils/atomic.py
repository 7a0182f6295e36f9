"""Atomic file writes: write to an exclusively created temporary file beside the target, then rename.

Temporary names are ``.<target name>.<random>.tmp<suffix>``, made by :func:`tempfile.mkstemp`
in the target's folder: unpredictable, and created with ``O_CREAT | O_EXCL | O_NOFOLLOW``, so a
file or symlink planted in advance at any name can neither be reused nor followed.

Writers that take a *path* (``mindspore.save_checkpoint``, ``mindspore.export``, ``onnx.save``,
``cv2.imwrite``, ``open``) then reopen that name, which is our own regular file: mkstemp has just
created it, so there is nothing for them to follow. (``mindspore.save_checkpoint`` deletes it and
writes ``<temp stem>.tmp`` before renaming it back; that name carries the same random part.) Someone
who can delete files in the target folder could swap the name for a link between our creation and
the writer's open - but such a user can replace the target itself anyway; folders with the sticky
bit (``/tmp``) forbid it. Before the rename the temporary path is checked to be a regular file,
never a link.

The final ``os.replace`` onto a target that is a symlink replaces the link itself; the file it
pointed to is not written.

Results are never lost (:func:`keeping_results`): inside it, a write that would replace an earlier
regular file with different bytes first renames that file to ``<name>_archived_<its time><ext>``
beside it (as BasicSR archives an experiment folder), and only when the new file is complete.
"""
import contextlib
import errno
import filecmp
import glob
import os
import stat
import tempfile
import time
from src.errors import UserError

_MKSTEMP_MODE = 0o600
_KEEPING = []  # the active keeping_results records (innermost last)


class SameFileError(UserError):
    """An output path names the input file (same path, a symlink to it or a hard link)."""


def _umask():
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc: read it the portable way (set and restore at once)
    os.umask(mask)
    return mask


def temp_prefix(path):
    """The fixed head of every temporary name :func:`atomic_target` uses for ``path`` (for stale-file globs)."""
    return f".{os.path.basename(os.path.abspath(path))}."


@contextlib.contextmanager
def atomic_target(path, suffix=""):
    """Yield a fresh temporary path next to ``path``; on success it replaces ``path``.

    The temporary file already exists (empty, created exclusively) when the caller gets its name;
    writers open it by name. A crash or exception leaves any existing ``path`` untouched and removes
    the temporary file and anything a writer derived from its name. ``suffix`` keeps an extension
    some writers insist on (``.ckpt``, ``.png``, ``.mindir``, ``.onnx``). The written file gets the
    usual ``0o666 & ~umask`` permissions unless the writer set its own (MindSpore makes checkpoints
    read-only). Raises OSError when the folder cannot be created or written, ValueError when the
    temporary path was replaced by something other than a regular file.
    """
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, exist_ok=True)
    except FileExistsError:  # the folder's name is taken by a file
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), directory) from None
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=f".tmp{suffix}", dir=directory)
    os.close(fd)
    stem = tmp[: len(tmp) - len(f".tmp{suffix}")]
    try:
        yield tmp
        info = os.lstat(tmp)
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"temporary file {tmp} was replaced by a link or special file while writing "
                             f"{path}; not installing it (someone else writes to {directory}?)")
        if stat.S_IMODE(info.st_mode) == _MKSTEMP_MODE:  # untouched by the writer: the mode open() would give
            os.chmod(tmp, 0o666 & ~_umask())
        if _KEEPING:
            _archive_previous(path, tmp)
        os.replace(tmp, path)
    finally:
        for leftover in glob.glob(glob.escape(stem) + ".tmp*"):  # ours, or derived from its random name by a writer
            try:
                if not stat.S_ISDIR(os.lstat(leftover).st_mode):
                    os.remove(leftover)
            except OSError:
                pass


def archived_name(path):
    """``<stem>_archived_<YYYYmmdd-HHMMSS><ext>`` of ``path``'s modification time (a free name: ``_2``, ``_3``,
    ... added when taken)."""
    stem, ext = os.path.splitext(path)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(os.path.getmtime(path)))
    candidate, index = f"{stem}_archived_{stamp}{ext}", 1
    while os.path.lexists(candidate):
        index += 1
        candidate = f"{stem}_archived_{stamp}_{index}{ext}"
    return candidate


def _archive_previous(path, new):
    """Rename an earlier regular file at ``path`` whose bytes differ from ``new`` (see keeping_results)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(info.st_mode) or filecmp.cmp(path, new, shallow=False):
        return
    target = archived_name(path)
    os.rename(path, target)
    _KEEPING[-1].append((path, target))


@contextlib.contextmanager
def keeping_results(log=print):
    """Within the block, every :func:`atomic_target` write that would replace an earlier file with other
    bytes keeps that file as ``<name>_archived_<time><ext>``; at the end one line says how many were kept
    (and names the first). A failed write replaces nothing (atomic), so a failed run never costs a result."""
    record = []
    _KEEPING.append(record)
    try:
        yield record
    finally:
        _KEEPING.remove(record)
        if record:
            first, kept = record[0]
            more = f" (and {len(record) - 1} more)" if len(record) > 1 else ""
            log(f"kept {len(record)} earlier result file(s) this run replaced: {first} -> "
                f"{os.path.basename(kept)}{more}")


def refuse_same_file(src, dst, what="--dst", src_what="--src"):
    """Raise :class:`SameFileError` when writing ``dst`` would replace the input ``src``.

    Catches the same path, a symlink to the input (either way) and a hard link (same device and
    inode). A ``dst`` that does not exist yet cannot be the input. ``what``/``src_what`` name the
    options in the one-line message.
    """
    if not src or not dst:
        return
    same = os.path.realpath(src) == os.path.realpath(dst)
    if not same:
        try:
            same = os.path.samefile(src, dst)
        except OSError:
            same = False
    if same:
        raise SameFileError(f"{what} {dst} is the same file as {src_what} {src}; writing it would replace the "
                            f"input - choose another {what}")


def open_append(path, newline=None):
    """Open text file ``path`` for appending (created if absent) without following a symlink.

    For logs that grow line by line (a rename per line would be wasteful): a symlink planted
    at ``path`` raises ``OSError`` (ELOOP) instead of appending to the file it points to.
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    return os.fdopen(fd, "a", encoding="utf-8", newline=newline)
