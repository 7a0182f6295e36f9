"""One writer per run folder: a lock file holding the writer's pid and host, locked with ``flock``.

Two training runs started into one ``--ckpt_dir`` would otherwise both write its CSV log, best/last
checkpoints and training states, interleaved. :func:`hold_folder` opens ``<folder>/.run.lock`` and takes an
exclusive ``flock`` on it for the run (the kernel releases it when the process ends, however it ends, so a
run killed with ``kill -9`` leaves no stale lock), then writes ``{"pid", "host", "started"}`` into it. A second
run finds the lock taken and is refused in one line naming the holder. A lock file that names another live
process of this host although nobody holds the lock (written by hand or by a tool that does not ``flock``)
is refused too, with the path to remove; one that names a process that is gone is taken over and said.
When the run ends, the file is removed while still locked (a run starting in that instant either finds
it locked and is refused, or finds no file and creates a new one).
"""
import contextlib
import fcntl
import json
import os
import socket
import time
from src.errors import UserError

LOCK_NAME = ".run.lock"


class FolderBusy(UserError):
    """Another live process holds the run folder; the message names it and what to do."""


def _owner(fd):
    """The JSON object in the lock file ``fd`` ({} when empty or not such an object)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        owner = json.loads(os.read(fd, 4096).decode("utf-8") or "{}")
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # exists (another user's): do not take it over
    return True


@contextlib.contextmanager
def hold_folder(folder, option="--ckpt_dir", log=print):
    """Hold ``folder`` for this process for the ``with`` block; :class:`FolderBusy` (one line naming the
    ``option``) when another live process holds it. A lock left by a process that is gone is taken over
    with one ``log`` line."""
    path = os.path.join(folder, LOCK_NAME)
    host = socket.gethostname()
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _owner(fd)
            raise FolderBusy(f"{option} {folder} is in use by another run (pid {owner.get('pid', '?')}, started "
                             f"{owner.get('started', '?')}); wait for it to end or choose another {option}") from None
        owner = _owner(fd)
        pid, where = owner.get("pid"), owner.get("host")
        if isinstance(pid, int) and pid != os.getpid():
            if where not in (None, host):
                raise FolderBusy(f"{option} {folder}: {path} names a run on host {where} (pid {pid}); if that run has "
                                 f"ended, remove {path}")
            if _alive(pid):
                raise FolderBusy(f"{option} {folder} is in use by another run (pid {pid}, started "
                                 f"{owner.get('started', '?')}); wait for it to end or choose another {option} (if "
                                 f"that process is not a run, remove {path})")
            log(f"note: {path} was left by a run that is gone (pid {pid}); taking the folder over")
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": host,
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode("utf-8"))
        try:
            yield path
        finally:
            with contextlib.suppress(OSError):
                if os.path.samestat(os.fstat(fd), os.stat(path)):  # still our file: remove it, then unlock
                    os.unlink(path)
    finally:
        os.close(fd)
