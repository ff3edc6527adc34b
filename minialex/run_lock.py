"""One writer per run folder (and per data cache): an OS lock that dies with its process.

Two ``train`` processes writing one folder would mix two runs (each epoch logged twice, best.h5
from one run and last.h5 from the other), so the process that writes a folder first takes
``acquire_run_lock(folder)``: ``fcntl.flock`` on ``FOLDER/.lock``, holding the owner's PID. A
second process is refused at once with a LockedError naming the folder and that PID. The kernel
drops the lock when its process ends in any way (kill -9 included), so a lock file left behind
never blocks the next run: the next owner simply takes it, and removes the temporary files a
killed save left (``run_folder.remove_stale_temps``). ``prepare`` takes ``acquire_file_lock(cache)``
(``.NAME.lock`` beside the cache).

The lock is an object, taken explicitly: in data-parallel training only the writing rank (rank 0)
takes it and holds it for the run::

    with acquire_run_lock("runs/x"):
        ...                                  # write last.h5, best.h5, metrics.jsonl

Where ``fcntl`` does not exist (Windows) the lock is a no-op.
"""

from __future__ import annotations

import os

from .run_folder import LOCK_NAME, remove_stale_temps

try:
    import fcntl
except ImportError:        # Windows: no flock; one writer is then the user's to ensure
    fcntl = None


class LockedError(RuntimeError):
    """The folder (or cache) is being written by another process: one line naming it and its PID."""


class RunLock:
    """A held lock; ``release()`` (or leaving the ``with``) frees it and removes the lock file."""

    def __init__(self, path: str, fd: int):
        self.path, self.fd = path, fd

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.remove(self.path)      # while still held: a waiter then sees the file is gone
        except OSError:
            pass
        os.close(self.fd)             # closing drops the flock
        self.fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def acquire_file_lock(path: str, what: str) -> RunLock:
    """Take the lock file ``path`` for ``what`` (the folder or file it guards, for the message),
    or raise LockedError naming the PID that holds it."""
    if fcntl is None:
        return RunLock(path, None)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                pid = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise LockedError(f"{what} is in use by another process (PID {pid}); wait until it "
                              "ends, or stop it, before writing there") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:       # not a file its last owner removed while we opened it: ours now
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
            except OSError:       # a full disk: the lock holds all the same, the PID is unknown
                pass
            return RunLock(path, fd)
        os.close(fd)


def acquire_run_lock(folder: str) -> RunLock:
    """Own the run folder ``folder`` (it must exist) for writing; see the module docstring."""
    lock = acquire_file_lock(os.path.join(folder, LOCK_NAME), folder.rstrip(os.sep))
    remove_stale_temps(folder)
    return lock


def cache_lock_path(cache: str) -> str:
    """The lock beside a data cache: data/c.h5 -> data/.c.h5.lock."""
    folder, name = os.path.split(os.path.abspath(cache))
    return os.path.join(folder, f".{name}.lock")
