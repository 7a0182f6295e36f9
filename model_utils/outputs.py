"""Check, before any work, that an entry script's output locations can be written.

A run that would only fail at its end (the evaluation report after every image, the first
checkpoint after ``val_every`` training steps) is refused at its start instead, with one
line naming the option:

- the path (or one of its parent folders) is an existing regular file where a folder is
  needed, or an existing folder where a file is needed;
- a part of the path is longer than the file system allows (``NAME_MAX``, usually 255 bytes),
  which would otherwise fail at the first write, in the middle of a progress bar;
- the nearest existing folder is not writable (``os.access``). Note: for root, permission
  bits never deny a write, so as root this only catches read-only file systems (``EROFS``);
  for other users it also catches folders without write permission.

Nothing is created here. Failures while writing (a full disk, a file system turning
read-only) are still possible later; entry scripts report those ``OSError`` as one line
too, and every writer goes through ``src.utils.atomic`` so no partial file is left.
"""
import os
from src.errors import UserError


class OutputPathError(UserError):
    """An output location given by an option cannot be written; the message names the option."""


def _nearest_existing(path):
    """``path`` or its closest existing ancestor."""
    current = path
    while not os.path.lexists(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


def _check_name_lengths(path, shown, option):
    existing = _nearest_existing(path)
    try:
        limit = os.pathconf(existing if os.path.isdir(existing) else os.path.dirname(existing), "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    for part in path.split(os.sep):
        if len(os.fsencode(part)) > limit:
            raise OutputPathError(f"--{option}: the name '{part[:40]}...' is {len(os.fsencode(part))} bytes long; this "
                                  f"file system allows {limit}; choose a shorter --{option}")


def _check_folder(folder, shown, option):
    _check_name_lengths(folder, shown, option)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise OutputPathError(f"--{option} {shown}: {folder} is a file, not a folder; choose another --{option}")
    existing = _nearest_existing(folder)
    if not os.path.isdir(existing):
        raise OutputPathError(f"--{option} {shown}: {existing} is a file, so the folder cannot be created; "
                              f"choose another --{option}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(f"--{option} {shown}: folder {existing} is not writable (read-only file system or "
                              f"no permission); choose another --{option}")


def check_output_folder(path, option):
    """Refuse (``OutputPathError``) a folder ``path`` given as ``--option`` that cannot be created or written.

    ``path``: the folder as the engine will use it (relative paths from the working
    directory). Returns the absolute path; creates nothing.
    """
    folder = os.path.abspath(path)
    _check_folder(folder, path, option)
    return folder


def check_output_file(path, option):
    """Refuse (``OutputPathError``) a file ``path`` given as ``--option`` that cannot be written.

    An existing folder of that name, a parent that is a file, or a parent that is not
    writable is refused. Returns the absolute path; creates nothing.
    """
    target = os.path.abspath(path)
    if os.path.isdir(target):
        raise OutputPathError(f"--{option} {path} is a folder; pass a file name")
    _check_name_lengths(target, path, option)
    _check_folder(os.path.dirname(target), path, option)
    return target


def check_outputs(outputs):
    """Check each ``(kind, option, path)`` of ``outputs``; kind is ``"folder"`` or ``"file"``; empty paths skipped."""
    for kind, option, path in outputs:
        if not path:
            continue
        if kind == "file":
            check_output_file(path, option)
        else:
            check_output_folder(path, option)
