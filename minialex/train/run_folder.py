"""A training run's folder: where it goes, and what a new run may write over.

    runs/<date>-<time>/     the default folder of a new run (``new_out_dir``); runs/latest
                            points to the newest (``point_latest``)
        config.json, metrics.jsonl, last.h5, best.h5      (see loop.py)

``holds_a_run`` tells whether a folder already has another run's checkpoint, so that a new run
never writes over it; ``inherit_best`` gives a branched run its source's best.h5;
``discard_unstarted_run`` removes what a run wrote before its first checkpoint. Every file is
written through ``minialex.files`` (whole or not at all), by the one process that holds the
folder's lock (``files.acquire_run_lock``).
"""

from __future__ import annotations

import datetime
import json
import os

from ..checkpoint import CheckpointError, read_extra, read_meta
from ..files import LOCK_NAME, copy_atomic


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
    """True when ``folder`` has a run's checkpoint: a last.h5 or best.h5. A folder with only a
    config.json and a metrics.jsonl holds nothing that can be resumed (its run was killed before
    its first save, by kill -9 or a power cut): the same command may start again there, and
    writes them anew, so that a batch scheduler's requeue never finds the folder blocked."""
    return any(os.path.exists(os.path.join(folder, name)) for name in ("last.h5", "best.h5"))


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


