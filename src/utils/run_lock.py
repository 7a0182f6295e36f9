"""One writer per run folder: a lock file holding the writer's pid and host.

Two training runs started into one ``--ckpt_dir`` would otherwise both write its CSV log, best/last
checkpoints and training states, interleaved. :func:`hold_folder` creates ``<folder>/.run.lock``
exclusively (``O_CREAT | O_EXCL``) with ``{"pid", "host", "started"}`` and removes it when the run ends.
A lock whose process is gone (killed with ``kill -9``, a machine restarted) is stale: on the same host a
pid that no longer exists is taken over, and the run says so; a lock from another host cannot be checked
and is refused with the path to remove.
"""
import contextlib
import json
import os
import socket
import time

LOCK_NAME = ".run.lock"


class FolderBusy(ValueError):
    """Another live process holds the run folder; the message names it and what to do."""


def _owner(path):
    try:
        with open(path, encoding="utf-8") as fh:
            owner = json.load(fh)
        return owner if isinstance(owner, dict) else {}
    except (OSError, ValueError):
        return {}


def _alive(pid):
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError, TypeError):
        return True  # exists (another user's) or unreadable: do not take it over
    return True


@contextlib.contextmanager
def hold_folder(folder, option="--ckpt_dir", log=print):
    """Hold ``folder`` for this process for the ``with`` block; :class:`FolderBusy` (one line naming the
    ``option``) when another live process holds it. A stale lock is taken over with one ``log`` line."""
    path = os.path.join(folder, LOCK_NAME)
    host = socket.gethostname()
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            owner = _owner(path)
            pid, where = owner.get("pid"), owner.get("host")
            if where not in (None, host):
                raise FolderBusy(f"{option} {folder} is held by a run on host {where} (pid {pid}); if that run has "
                                 f"ended, remove {path}") from None
            if pid is not None and _alive(pid) and int(pid) != os.getpid():
                since = owner.get("started", "?")
                raise FolderBusy(f"{option} {folder} is in use by another run (pid {pid}, started {since}); wait for "
                                 f"it to end or choose another {option}") from None
            log(f"note: {path} was left by a run that is gone (pid {pid}); taking the folder over")
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
    else:
        raise FolderBusy(f"{option} {folder}: could not take {path} (another process keeps creating it)")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"pid": os.getpid(), "host": host, "started": time.strftime("%Y-%m-%d %H:%M:%S")}, fh)
    try:
        yield path
    finally:
        if _owner(path).get("pid") == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
