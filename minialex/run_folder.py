"""A training run's folder: where it goes, and the file moves that keep it whole.

    runs/<date>-<time>/     the default folder of a new run (``new_out_dir``); runs/latest
                            points to the newest (``point_latest``)
        config.json, metrics.jsonl, last.h5, best.h5      (see minialex/train.py)

``holds_a_run`` tells whether a folder already has another run's files, so that a new run never
writes over them; ``copy_atomic`` copies a checkpoint so that the destination is always the old
file or the new one, never half of one (through checkpoint.write_atomic, as save writes last.h5);
``write_text`` and ``append_line`` write config.json and metrics.jsonl so that a full disk is one
line (WriteError), not a traceback. The folder belongs to one process at a time (run_lock.py),
which first removes the temporary files a killed save left (``remove_stale_temps``).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil

#: The lock file a run folder's owner holds (run_lock.py), removed when the run leaves.
LOCK_NAME = ".lock"


def new_out_dir(parent: str = "runs") -> str:
    """parent/<date>-<time>, with -2, -3, ... if that name is taken."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(parent, stamp)
    n = 1
    while os.path.exists(path):
        n += 1
        path = os.path.join(parent, f"{stamp}-{n}")
    return path


def point_latest(out: str) -> None:
    """runs/latest -> the newest default run folder, so that 'runs/latest/best.h5' works.
    Best effort: where links are not allowed the folder is still there under its own name."""
    link = os.path.join(os.path.dirname(out), "latest")
    try:
        if os.path.islink(link):
            os.remove(link)
        if not os.path.exists(link):
            os.symlink(os.path.basename(out), link)
    except OSError:
        pass


def holds_a_run(folder: str) -> bool:
    """True when ``folder`` has a run's files: a last.h5 or best.h5, or a metrics.jsonl with a
    record in it."""
    if any(os.path.exists(os.path.join(folder, name)) for name in ("last.h5", "best.h5")):
        return True
    metrics = os.path.join(folder, "metrics.jsonl")
    if not os.path.exists(metrics):
        return False
    with open(metrics) as fh:
        return any(line.strip() for line in fh)


def inherit_best(source: str, branch: str) -> None:
    """A run resumed into a new folder starts with a copy of its source's best.h5, so that the
    branch has one even if none of its own epochs does better. A folder whose best.h5 is missing
    while its last.h5 ends the best epoch (the copy failed on a full disk) gets that copy."""
    src, dst = os.path.join(source, "best.h5"), os.path.join(branch, "best.h5")
    if os.path.exists(dst):
        return
    if os.path.exists(src) and not (os.path.exists(branch) and os.path.samefile(source, branch)):
        copy_atomic(src, dst)
    elif _ends_the_best_epoch(os.path.join(source, "last.h5")):
        copy_atomic(os.path.join(source, "last.h5"), dst)


def _ends_the_best_epoch(path: str) -> bool:
    from .checkpoint import CheckpointError, read_extra, read_meta
    try:
        meta, history = read_meta(path), json.loads(read_extra(path)["train"]["history"])
    except (CheckpointError, KeyError, ValueError):
        return False
    errors = [h["val_top1_error"] for h in history]    # saved at an epoch's end that improved
    return meta.get("batch") == 0 and bool(errors) and errors[-1] < min(errors[:-1], default=2)


def discard_unstarted_run(folder: str) -> None:
    """Remove what a run wrote before its first checkpoint (config.json, metrics.jsonl), the
    folder if that leaves it empty, and a runs/latest link to it."""
    for name in ("config.json", "metrics.jsonl", LOCK_NAME):   # the lock: we are leaving
        path = os.path.join(folder, name)
        if os.path.exists(path):
            os.remove(path)
    try:
        os.rmdir(folder)
    except OSError:
        return        # something else is in it: leave the folder
    link = os.path.join(os.path.dirname(folder.rstrip(os.sep)), "latest")
    if os.path.islink(link) and os.readlink(link) == os.path.basename(folder.rstrip(os.sep)):
        os.remove(link)


def copy_atomic(src: str, dst: str) -> None:
    """Copy src to dst through checkpoint.write_atomic, so dst is the old file or the new one,
    never half of one; an interrupted copy (a second Ctrl-C) or a full disk removes its partial
    temporary file (a full disk raises a one-line WriteError)."""
    from .checkpoint import write_atomic
    with open(src, "rb") as source:
        write_atomic(dst, lambda fh: shutil.copyfileobj(source, fh), os.path.getsize(src),
                     f"the copy of {os.path.basename(src)}")


def write_text(path: str, text: str) -> None:
    """Replace a small text file (config.json, a rewritten metrics.jsonl) whole, as a checkpoint."""
    from .checkpoint import write_atomic
    data = text.encode()
    write_atomic(path, lambda fh: fh.write(data), len(data), os.path.basename(path))


def append_line(path: str, line: str) -> None:
    """Append one line to a log (metrics.jsonl). If the disk is full, the file is cut back to
    where it was, so that it never ends in half a line, and a one-line WriteError says so."""
    from .checkpoint import write_error
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


def remove_stale_temps(folder: str) -> None:
    """Remove the temporary files of saves killed midway (.last.h5.XXXX.tmp, left by kill -9 or a
    power cut). Called by the folder's owner only (run_lock), so no save of another is running."""
    for name in os.listdir(folder):
        if name.startswith(".") and name.endswith(".tmp") or name == "best.h5.tmp":
            try:
                os.remove(os.path.join(folder, name))
            except OSError:
                pass
