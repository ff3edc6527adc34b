"""The rules of ``train --resume``: what a checkpoint stores to continue a run, and how it comes back.

A resumed run must compute what the uninterrupted run would have computed, batch for batch (on
the CPU, bit for bit). So a checkpoint written by ``train`` holds, beside the weights and momentum
buffers (``minialex.save``), an ``extra`` tree (``checkpoint_extra``):

    train/   epoch, batch, step, the epoch's running sums, the schedule's state, the epoch history
             and the run's options (JSON)
    rng/     every dropout generator's state (``rng_state.py``)
    data/    the training set's mean, PCA and class names: what ``predict`` needs, and the data spec

On ``--resume`` (``merge_resume``):

- options the user did not give again come from the checkpoint;
- the learning rate, momentum, weight decay and ``--decay-biases`` given again win (the paper's
  authors lowered the learning rate by hand, §5);
- data, batch size, seed and the image counts must match the checkpoint's, since the saved batch
  position means nothing in another data order;
- a checkpoint older than its folder's ``last.h5`` is refused unless ``--out`` branches elsewhere;
- metrics.jsonl loses the lines written after the checkpoint (``open_metrics``).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Dict, Optional

import numpy

from ..checkpoint import CheckpointError, load, read_extra, read_meta
from ..data.sources import same_spec
from ..files import LogError, read_log, write_text
from .rng_state import generator_states, restore_generator_states
from .run_folder import holds_a_run


class TrainingError(RuntimeError):
    """A run that cannot go on (diverged, out of memory, a checkpoint that does not fit): the
    message is one line for the user."""


#: What the checkpoint decides on --resume unless the user gave the option again.
FROM_CHECKPOINT = ("data", "preset", "epochs", "batch_size", "lr", "momentum", "weight_decay",
                   "decay_biases", "seed", "schedule", "patience", "step_size", "train_images",
                   "val_images", "lr_scaling", "without", "base_size")
#: What --resume cannot change: the batch position in the checkpoint depends on them.
FIXED_ON_RESUME = ("data", "batch_size", "seed", "train_images", "val_images", "without",
                   "base_size")
#: Given again on --resume, these win over the checkpoint's values.
OVERRIDABLE = ("lr", "momentum", "weight_decay", "decay_biases")


def _same_option(key: str, given, stored) -> bool:
    if key == "data" and stored is not None:
        return same_spec(given, stored)
    if key == "without":          # the network and the crops: a list in JSON, any order given
        return sorted(given) == sorted(stored or ())
    return given == stored


def checkpoint_path(resume: str) -> str:
    """``--resume`` names a checkpoint or a run folder (its last.h5)."""
    if not os.path.isdir(resume):
        return resume
    path = os.path.join(resume, "last.h5")
    if not os.path.exists(path) and os.path.exists(os.path.join(resume, "config.json")):
        raise TrainingError(f"{resume.rstrip(os.sep)} holds no checkpoint yet (its run was "
                            "stopped before its first save), so there is nothing to resume: run "
                            "the same command again without --resume, and it starts there anew")
    return path


def merge_resume(cfg) -> Optional[Dict]:
    """On --resume, fill ``cfg`` (a TrainConfig) from the checkpoint for every option the user did
    not give, after checking the rules above. Returns None without --resume, else
    {'path', 'meta', 'extra', 'overrides'}."""
    if not cfg.resume:
        return None
    path = checkpoint_path(cfg.resume)
    meta, extra = read_meta(path), read_extra(path)
    if "train" not in extra:
        raise TrainingError(f"{path}: this checkpoint holds no training state (it was not "
                            "written by 'train'), so it cannot be resumed")
    folder = os.path.dirname(os.path.abspath(path))
    last = os.path.join(folder, "last.h5")
    into_own_folder = cfg.out is None or (
        os.path.isdir(cfg.out) and os.path.samefile(cfg.out, folder))
    if into_own_folder and os.path.basename(path) != "last.h5" and os.path.exists(last):
        newer = read_meta(last)
        if int(newer.get("step", 0)) > int(meta.get("step", 0)):
            raise TrainingError(
                f"{path} is from epoch {meta.get('epoch')}, but {last} is at epoch "
                f"{newer.get('epoch')}: continuing here would overwrite the later epochs; "
                f"resume from {last}, or give --out NEW_FOLDER to branch from {path}")
    saved = json.loads(extra["train"]["config"])
    overrides = {k: getattr(cfg, k) for k in OVERRIDABLE if getattr(cfg, k) is not None}
    for key in FIXED_ON_RESUME:
        given, stored = getattr(cfg, key), saved.get(key)
        if given is not None and not _same_option(key, given, stored):
            flag = "--" + key.replace("_", "-")
            raise TrainingError(
                f"{path} was trained with {flag} {stored if stored is not None else '(not given)'}"
                f", not {given}: a resumed run continues the same data order; leave {flag} "
                f"out, or start a new run (without --resume) in another --out")
    for key in FROM_CHECKPOINT:
        if getattr(cfg, key) is None:
            setattr(cfg, key, saved.get(key))
    if cfg.preset is not None and cfg.preset != meta.get("preset"):
        raise TrainingError(f"{path} holds preset {meta.get('preset')!r}, not {cfg.preset!r}")
    cfg.preset = meta.get("preset")
    if cfg.out is None:
        cfg.out = folder
    return {"path": path, "meta": meta, "extra": extra, "overrides": overrides}


def check_out_folder(cfg, resume: Optional[Dict]) -> None:
    """Refuse to write a new run over another run's files (a resume writes into its own)."""
    if cfg.out is not None and os.path.exists(cfg.out) and not os.path.isdir(cfg.out):
        raise TrainingError(f"--out {cfg.out} is a file, not a folder: give a folder for the run")
    if cfg.out is None or not os.path.isdir(cfg.out):
        return
    if resume is not None and os.path.realpath(cfg.out) == os.path.realpath(
            os.path.dirname(os.path.abspath(resume["path"]))):
        return
    if holds_a_run(cfg.out):
        raise TrainingError(f"{cfg.out} already holds a run (last.h5 or best.h5): "
                            f"continue it with --resume {cfg.out}, or choose another --out")


def checkpoint_extra(trainer, rng_states: Optional[Dict[str, str]] = None) -> Dict:
    """The ``extra`` tree a training checkpoint holds (module docstring), from what the trainer,
    its schedule, its model's generators and its training set say of themselves."""
    stats, train_set = trainer.train_set.stats, trainer.train_set
    position = trainer.state_dict()
    extra = {
        "train": {"epoch": position["epoch"], "batch": position["batch"],
                  "step": position["step"], "sums": json.dumps(position["sums"]),
                  "schedule": json.dumps(trainer.schedule.state_dict()),
                  "history": json.dumps(position["history"]),
                  "config": json.dumps(trainer.config.resolved()),
                  "world_size": trainer.world.size},   # world.py
        "rng": rng_states if rng_states is not None else generator_states(trainer.model),
        "data": {"mean": numpy.asarray(stats.mean),
                 "pca_eigenvalues": numpy.asarray(stats.pca_eigenvalues),
                 "pca_eigenvectors": numpy.asarray(stats.pca_eigenvectors),
                 "classes": numpy.array([c.encode() for c in train_set.classes]),
                 "class_names": numpy.array([c.encode() for c in train_set.class_names]),
                 "spec": trainer.config.data, "base_size": train_set.base_size},
    }
    if not extra["rng"]:
        extra.pop("rng")
    return extra


def restore(resume: Dict, model, optimizer, schedule, num_classes: int, echo) -> Dict:
    """Load the checkpoint into the model and the optimizer, the schedule's and the generators'
    states into theirs, and apply the options given again (they win, and ``echo`` says so).
    Returns the trainer's position (its ``load_state_dict`` takes it)."""
    path, extra = resume["path"], resume["extra"]
    try:
        load(path, model=model, optimizer=optimizer)
    except CheckpointError as e:     # a cause is named only when it is known
        stored = resume["meta"]["config"].get("num_classes")
        known = (f"; the data now has {num_classes} classes, the checkpoint {stored}"
                 if stored not in (None, num_classes) else "")
        raise TrainingError(str(e) + known) from None
    state = extra["train"]
    schedule.load_state_dict(json.loads(state["schedule"]))
    restore_generator_states(model, extra.get("rng", {}))
    for key, value in resume["overrides"].items():
        if getattr(optimizer, key) != value:
            old = getattr(optimizer, key)
            echo(f"{key.replace('_', ' ')} set to {_show(value)} (the checkpoint had {_show(old)})")
            setattr(optimizer, key, type(old)(value))
    return {"epoch": state["epoch"], "batch": state["batch"], "step": state["step"],
            "sums": json.loads(state["sums"]), "history": json.loads(state["history"])}


def open_metrics(path: str, resume: Optional[Dict], step: int, history) -> None:
    """Start metrics.jsonl: empty for a new run; on resume, the lines up to the checkpoint's
    ``step`` (or its epoch history when the log is gone from a branched folder). A last line cut
    off by a crash is dropped with a note (it was written after the checkpoint, which holds the
    run's state); a damaged line before it stops the resume with one line naming the file and
    the line (``files.read_log``)."""
    kept = []
    if resume is not None:
        if os.path.exists(path):
            try:
                kept, cut = read_log(path)
            except LogError as e:
                raise TrainingError(f"{e}: move the file away and resume again (the epoch "
                                    "records are rebuilt from the checkpoint)") from None
            if cut is not None:
                sys.stderr.write(f"note: {path} line {cut} was cut off (the run was stopped while "
                                 "writing it): dropped; the checkpoint holds the run's state\n")
            kept = [r for r in kept if r.get("step", 0) <= step]
        else:
            kept = list(history)
    write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


def _show(value) -> str:
    return str(value) if isinstance(value, bool) else f"{value:g}"
