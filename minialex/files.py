"""Files written whole, and folders written by one process at a time.

Everything minialex writes goes through here, so that a crash, a kill, Ctrl-C, a full disk or a
second process never leaves a broken file in place of a good one:

- ``write_atomic(path, write, size)``: the bytes go to a temporary ``.NAME.XXXX.tmp`` in the same
  folder, which is fsynced and renamed over ``path``, and the folder fsynced: after a crash or a
  power cut ``path`` is the old file or the new one, whole. An OSError (ENOSPC, EFBIG, EIO...)
  removes the temporary file, keeps the old one and becomes a one-line ``WriteError`` naming the
  file, the reason and the room it needed. ``copy_atomic`` and ``write_text`` use it;
  ``append_line`` adds one line to a log and cuts it back if the disk is full.
- ``check_output(path, reads)``: before a command writes anything, refuse in one line an output
  path that cannot work (a folder, or a name under a file) or that would destroy something: one of
  the files the command reads, or an HDF5 file (a checkpoint or a data cache) that it did not make.
- ``acquire_run_lock(folder)``: ``fcntl.flock`` on ``FOLDER/.lock``, holding the owner's PID. A
  second process is refused at once with a ``LockedError`` naming the folder and that PID. The
  kernel drops the lock when its process ends in any way (kill -9 included), so a lock file left
  behind never blocks the next run; the next owner removes the temporary files a killed save left
  (``remove_stale_temps``). A data cache is guarded the same way (``acquire_file_lock`` on
  ``cache_lock_path(cache)``). Where ``fcntl`` does not exist (Windows) the lock is a no-op.

This module sits at the bottom of the package: the checkpoint, the data cache and the run folder
all use it, and it imports nothing of minialex.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from typing import List, Optional, Tuple

class WriteError(RuntimeError):
    """A file could not be written (a full disk, a file-size limit, an I/O error): one line naming
    the file, the reason and the room it needed. ``errno`` is the OSError's."""

    def __init__(self, message: str, errno_: Optional[int] = None):
        super().__init__(message)
        self.errno = errno_


def size_text(n: float) -> str:
    """Bytes for people: 13.8 GB, 150.2 MB, 48 kB, 512 bytes."""
    return (f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB" if n >= 1e6 else
            f"{n / 1e3:.0f} kB" if n >= 1e3 else f"{int(n)} bytes")


def write_error(e: OSError, path: str, what: str, size: int, kept: str = "") -> WriteError:
    """The one line for an OSError met while writing ``size`` bytes of ``what`` to ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        free = f", {size_text(shutil.disk_usage(folder).free)} free there"
    except OSError:
        free = ""
    why = (e.strerror or str(e)).lower() if e.errno != errno.EFBIG else \
        "file too large (a file-size limit: ulimit -f)"
    return WriteError(f"cannot write {path}: {why}; {size_text(size)} needed for {what}{free}"
                      + (f"; {kept}" if kept else ""), e.errno)


class OutputError(ValueError):
    """An output path that cannot be written, or would destroy a file the user needs: one line."""


#: The first bytes of every HDF5 file: minialex's checkpoints and data caches.
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_hdf5(path) -> bool:
    """True when ``path`` is a file that starts as an HDF5 file does (a checkpoint, a cache)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
    except OSError:
        return False


def check_folder_path(path, flag: str = "--out") -> None:
    """Refuse a path that lies under a file (``notes.txt/run``): no folder can be made there.
    The first part of the path that exists must be a folder."""
    parent = os.path.abspath(os.fspath(path))
    while not os.path.exists(parent):
        up = os.path.dirname(parent)
        if up == parent:
            return
        parent = up
    if not os.path.isdir(parent) and parent != os.path.abspath(os.fspath(path)):
        raise OutputError(f"{flag} {os.fspath(path)}: {parent} is a file, not a folder, so "
                          "nothing can be written under it; choose another path")


def check_output(path, reads=(), flag: str = "--out", what: str = "the output") -> str:
    """Refuse, before any work, an output file ``path`` that cannot work or would destroy a file:

    - a folder, or a path under a file (``check_folder_path``);
    - the same file as one of ``reads``, the files the command reads (``os.path.samefile``: a
      link or another name of the same file counts), since writing would replace its own input;
    - a place inside a folder of ``reads`` (a dataset's folder): the file would replace one of
      its images or become one;
    - an existing HDF5 file (a checkpoint or a data cache): no command writes a picture or a
      graph over one. (``train`` and ``prepare`` write only their own, see run_folder.py and
      prepare.py.)

    Raises OutputError, one line naming the path; returns ``path``."""
    text = os.fspath(path)
    check_folder_path(text, flag)
    if os.path.isdir(text):
        raise OutputError(f"{flag} {text} is a folder: give a file name for {what}")
    for source in reads:
        folder = os.fspath(source)
        if os.path.isdir(folder) and os.path.realpath(text).startswith(
                os.path.join(os.path.realpath(folder), "")):
            raise OutputError(f"{flag} {text} is inside {folder}, the dataset this command reads: "
                              f"{what} would replace one of its images or become one; choose "
                              f"another {flag}")
    if not os.path.exists(text):
        return text
    for source in reads:
        try:
            same = os.path.samefile(text, os.fspath(source))
        except OSError:           # an input that does not exist: its own error comes later
            same = False
        if same:
            raise OutputError(f"{flag} {text} is the file this command reads ({os.fspath(source)}): "
                              f"writing {what} there would destroy it; choose another {flag}")
    if is_hdf5(text):
        raise OutputError(f"{flag} {text} is a checkpoint or a data cache (an HDF5 file): writing "
                          f"{what} there would destroy it; choose another {flag}")
    return text


def write_atomic(path, write, size: int, what: str = "the checkpoint") -> str:
    """Write a file whole or not at all: ``write(fh)`` fills ``.NAME.XXXX.tmp`` beside ``path``,
    which is fsynced, renamed over ``path``, and the folder fsynced, so that after a crash or a
    power cut ``path`` is the old file or the new one. On any OSError (ENOSPC, EFBIG, EIO...) or
    interruption the temporary file is removed and ``path`` left as it was; an OSError becomes a
    WriteError naming ``path``, the reason and ``size`` (the bytes it needed). Returns ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp, renamed = None, False
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".",
                                   suffix=".tmp")
        mask = os.umask(0)   # mkstemp makes the file 0600: give it the mode of any file the
        os.umask(mask)       # user creates (usually 0644), so a checkpoint can be shared
        os.fchmod(fd, 0o666 & ~mask)
        with open(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())        # the bytes are on disk before the name points to them
        os.replace(tmp, path)
        tmp, renamed = None, True
        if hasattr(os, "O_DIRECTORY"):   # ... and the rename survives a power cut (not Windows)
            dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except OSError as e:
        _remove(tmp)                     # first: the free space then counts its room back
        kept = (f"{os.path.basename(path)} is left as it was"
                if os.path.exists(path) and not renamed else "")
        raise write_error(e, path, what, size, kept) from None
    finally:
        _remove(tmp)
    return path


def _remove(tmp: Optional[str]) -> None:
    if tmp is not None and os.path.exists(tmp):
        os.remove(tmp)


def copy_atomic(src: str, dst: str) -> None:
    """Copy src to dst through write_atomic, so dst is the old file or the new one,
    never half of one; an interrupted copy (a second Ctrl-C) or a full disk removes its partial
    temporary file (a full disk raises a one-line WriteError)."""
    with open(src, "rb") as source:
        write_atomic(dst, lambda fh: shutil.copyfileobj(source, fh), os.path.getsize(src),
                     f"the copy of {os.path.basename(src)}")


def write_text(path: str, text: str) -> None:
    """Replace a small text file (config.json, a rewritten metrics.jsonl) whole, as a checkpoint."""
    data = text.encode()
    write_atomic(path, lambda fh: fh.write(data), len(data), os.path.basename(path))


def append_line(path: str, line: str) -> None:
    """Append one line to a log (metrics.jsonl). If the disk is full, the file is cut back to
    where it was, so that it never ends in half a line, and a one-line WriteError says so."""
    data = memoryview((line + "\n").encode())
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        start = os.fstat(fd).st_size
        done = 0
        while done < len(data):      # unbuffered: a write may stop partway, then fail
            done += os.write(fd, data[done:])
    except OSError as e:
        try:
            os.ftruncate(fd, start)
        except OSError:
            pass
        raise write_error(e, path, "a line of the log", len(data)) from None
    finally:
        os.close(fd)


class LogError(ValueError):
    """A log (metrics.jsonl) with a damaged line that is not its last: one line naming the file
    and the line."""


def read_log(path: str) -> Tuple[List[dict], Optional[int]]:
    """The records of a JSON-lines log such as metrics.jsonl, one JSON object per line, and the
    number of its last line if that one was cut off, else None. ``append_line`` writes a line and
    its newline at once, so a crash, a kill or a power cut while appending leaves a last line
    without its newline that is not whole JSON: that line is left out, and a reader carries on
    without it. Any other line that is not a JSON object raises LogError naming the file and the
    line (counted from 1, blank lines included)."""
    with open(path, "rb") as fh:
        lines = fh.read().split(b"\n")      # the last item: what follows the last newline
    records, cut = [], None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            if number == len(lines) and not isinstance(e, UnicodeDecodeError):
                # no newline after it: cut off while written (the log is ASCII: json.dumps)
                cut = number
                continue
            why = "not text" if isinstance(e, UnicodeDecodeError) else e.msg
            raise LogError(f"{path} is not a metrics log (line {number}: {why})") from None
        if not isinstance(record, dict):
            raise LogError(f"{path} is not a metrics log (line {number} is not a JSON object)")
        records.append(record)
    return records, cut


def remove_stale_temps(folder: str) -> None:
    """Remove the temporary files of saves killed midway (.last.h5.XXXX.tmp, left by kill -9 or a
    power cut). Called by the folder's owner only (acquire_run_lock), so no save of another is running."""
    for name in os.listdir(folder):
        if name.startswith(".") and name.endswith(".tmp") or name == "best.h5.tmp":
            try:
                os.remove(os.path.join(folder, name))
            except OSError:
                pass


#: The lock file a run folder's owner holds (acquire_run_lock), removed when the run leaves.
LOCK_NAME = ".lock"


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
