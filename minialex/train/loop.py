"""Training AlexNet: the loop behind ``python cli.py train``.

One epoch (§5): for every batch of 128, forward through both columns, the mean cross-entropy,
backward, and the SGD update of ``minialex.optim``; then the validation top-1 and top-5 error,
the learning-rate schedule (divide by 10 when the validation error stops improving, at most three
times) and a checkpoint.

What a run writes to its folder (``--out``, default ``runs/<date>-<time>``)::

    config.json     the options of the run (runs/latest points to the newest default folder)
    metrics.jsonl   one JSON object per line: {"event": "step", ...} every ``log_every`` steps
                    (loss, top1_error, lr) and {"event": "epoch", ...} after each epoch
                    (train/val loss, top-1/top-5 error, lr, images/s, seconds)
    last.h5         checkpoint, rewritten (atomically) after every epoch and on Ctrl-C;
                    ``--resume`` takes it (or the folder)
    best.h5         a copy of the checkpoint with the lowest validation top-1 error so far

A checkpoint holds, beside the weights and momentum buffers, everything ``--resume`` needs to
compute the same losses, batch for batch, as a run that went through: ``resume.py`` says what
and states the rules of a resume.

The run's devices, preset, precision and data are chosen in ``setup.py``; the generators'
states that make resume exact are saved and restored by ``rng_state.py``; Ctrl-C is caught by
``stop_flag.py``; the run folder is placed by ``run_folder.py`` and its files written whole by
``minialex.files``; ``world.py`` is the one process (data-parallel jobs give another World).

Failures: the first Ctrl-C (or SIGTERM, a batch scheduler's stop) lets the current step finish,
then saves ``last.h5`` with the position and returns; a second one stops at once (the step under
way is dropped; a step whose weights were updated is always counted too, so a checkpoint's
weights and position agree; the best.h5 copy is never left half-done; the last checkpoint
written is kept).
A NaN or infinite loss is read once the whole step, update included, is queued (one host sync per
step on a GPU): the run stops naming the step, and the spoiled weights are never saved; a
non-finite validation loss stops it the same way before the epoch's checkpoint. Out of GPU memory
says so and suggests a smaller batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy

from .. import cpu, data as D, functional as F
from ..autograd import Tensor
from ..backend import as_numpy, cupy, default_devices
from ..checkpoint import WriteError, load, read_meta, save
from ..data import DataError
from ..data.sources import absolute_spec
from ..files import acquire_run_lock, append_line, copy_atomic, write_text
from ..models import WITHOUT, build_network, check_without, get_preset
from ..optim import SGD, make_schedule
from .evaluate import evaluate, topk_hits
from .resume import (TrainingError, check_out_folder, checkpoint_extra, merge_resume, open_metrics,
                     restore)
from .rng_state import generator_states
from .run_folder import discard_unstarted_run, holds_a_run, inherit_best, new_out_dir, point_latest
from .setup import (DEFAULTS, choose_preset, describe_storage, open_data, parse_devices,
                    set_precision, settle, stored_side)
from .stop_flag import SIGNALS, StopFlag
from .config import TrainConfig, TrainResult
from .world import World


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------

def _top1_correct(logits, labels) -> int:
    """How many of a batch's logits (N, C) rank the label (N,) first."""
    return int(topk_hits(as_numpy(logits), as_numpy(labels), 1)[0].sum())


class Trainer:
    """One run: set up (or restore) model, optimizer, schedule and data, then loop epochs."""

    def __init__(self, config: TrainConfig, echo: Callable[[str], None] = print,
                 on_step: Optional[Callable[[int, float], None]] = None,
                 world: Optional[World] = None):
        self.config = dataclasses.replace(config)
        self.world = world or World()          # data-parallel: minialex.tools.distributed
        self.writer = self.world.writer        # rank 0 alone prints and writes
        self.echo = echo if self.writer else (lambda line: None)
        self.on_step = on_step
        self.losses: List[float] = []
        self.history: List[Dict] = []
        self.epoch = 0          # epochs completed
        self.batch = 0          # next batch of the current epoch
        self.step = 0           # updates done
        self.sums = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
        self.checkpoint_path: Optional[str] = None
        self.out: Optional[str] = None
        self.stop: Optional[StopFlag] = None   # set by run()
        self.nothing_to_do = False              # a resumed run that has no epoch left
        self.made_files = False                 # this run made its folder's files
        self.lock = None                        # the run folder's lock (files.acquire_run_lock)
        self.from_recipe: List[str] = []        # options the data's measured recipe set
        self.test: Optional[Dict] = None        # test_best's record, once training is over
        self.stop_agreed = False                # a rank asked to stop (data-parallel only)
        self.warmup: Optional[Callable[[int], float]] = None   # lr factor by step

    # -- setting up ------------------------------------------------------------------------
    def setup(self) -> None:
        """Settle the options once, then data, model, optimizer and schedule; on --resume the
        checkpoint's state; then the run folder."""
        resume = self.settle_options()
        self.open_data()
        self.build_model()
        if resume is not None:
            self.restore(resume)
        self.world.start(self.model, self.optimizer, self.config.seed,
                         None if resume is None else resume["extra"].get("rng", {}))
        self.echo(self.describe_run())
        self.nothing_to_do = resume is not None and (
            self.epoch >= self.config.epochs or self.schedule.finished)
        if self.nothing_to_do:        # leave the finished run's files as they are, make none
            self.out = self.config.out or os.path.dirname(os.path.abspath(resume["path"]))
        elif not self.writer:         # rank 0 makes the folder and says where it is
            self.out = self.world.share(None)
        else:
            self.world.share(self.open_run_folder(resume))

    def settle_options(self) -> Optional[Dict]:
        """Fill every option of ``self.config`` once, in this order: the options given, on
        --resume the checkpoint's (resume.merge_resume), the data's measured recipe
        (setup.RECIPES), the paper's defaults (setup.DEFAULTS). Choose the devices and the
        preset. Returns the resume record, or None."""
        cfg, world = self.config, self.world
        # The folder's lock first, before anything is read or written: a resume into a folder
        # another process is writing is refused naming that process, not judged by a checkpoint
        # it may be replacing.
        folder = cfg.out or (cfg.resume if cfg.resume and os.path.isdir(cfg.resume) else
                             os.path.dirname(os.path.abspath(cfg.resume)) if cfg.resume else None)
        if self.writer and folder and os.path.isdir(folder):
            self.lock = acquire_run_lock(folder)
        resume = merge_resume(cfg)
        cfg.data = absolute_spec(cfg.data or DEFAULTS["data"])   # found again from any folder
        world.check_resume(resume)
        if self.writer:
            check_out_folder(cfg, resume)
        devices = parse_devices(world.map_devices(cfg.devices)) or default_devices()
        cfg.preset, why = choose_preset(cfg.preset, devices, cfg.data)
        if resume is not None:
            why = f"the preset of {resume['path']}"
        set_precision(cfg.precision)
        self.from_recipe = settle(cfg)
        cfg.without = check_without(cfg.without, tuple(WITHOUT))
        self.devices = devices
        for line in world.describe(cfg, devices):
            self.echo(line)
        place = str(devices[0]) if devices[0] == devices[1] else f"{devices[0]} and {devices[1]}"
        self.echo(f"preset '{cfg.preset}' on {place}: {why}")
        if not any(d.is_cuda for d in devices):
            self.echo(f"the CPU: {cpu.summary()}")
        return resume

    def open_data(self) -> None:
        """The training and validation splits, stored at the side the preset's crops need."""
        cfg = self.config
        spec = get_preset(cfg.preset)
        base = self.base_size = stored_side(cfg.base_size, spec)
        self.train_set = open_data(cfg.data, "train", cfg.seed, base, cfg.train_images)
        self.val_set = open_data(cfg.data, "val", cfg.seed, base, cfg.val_images)
        if len(self.train_set) < cfg.batch_size:
            raise TrainingError(f"--batch-size {cfg.batch_size} is more than the "
                                f"{len(self.train_set)} training images: use --batch-size "
                                f"{len(self.train_set)} or less, or more --train-images")
        self.world.check_start(cfg, self.train_set, self.val_set)
        self.echo(f"data '{cfg.data}': {self.train_set.num_classes} classes, "
                  f"{len(self.train_set):,} training and {len(self.val_set):,} validation images, "
                  + describe_storage(self.train_set, base, spec.input_size,
                                     "augmentation" not in cfg.without))

    def build_model(self) -> None:
        """The network (§3), SGD (§5), the learning-rate schedule, and the training loader."""
        cfg = self.config
        self.model = build_network(self.train_set.num_classes, cfg.preset, self.devices, cfg.seed,
                                   cfg.without)
        for trick in cfg.without:
            self.echo(f"without {trick}: {WITHOUT[trick]}, to measure what it is worth")
        self.devices = self.model.devices
        self.optimizer = SGD(self.model.named_parameters(), lr=cfg.lr * self.world.lr_factor(cfg),
                             momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                             decay_biases=cfg.decay_biases)
        self.schedule = make_schedule(cfg.schedule, self.optimizer, patience=cfg.patience,
                                      step_size=cfg.step_size)
        self.train_loader = self._loader(train=True)    # set_epoch chooses each epoch's order

    def restore(self, resume: Dict) -> None:
        """Continue from a checkpoint: each stateful part loads its own state (resume.py)."""
        self.load_state_dict(restore(resume, self.model, self.optimizer, self.schedule,
                                     self.train_set.num_classes, self.echo))
        self.checkpoint_path = resume["path"]
        self.config.decay_biases = self.optimizer.decay_biases   # what the update really does

    def describe_run(self) -> str:
        """The banner's line on the network, the update and the schedule."""
        cfg = self.config
        nparams = sum(p.size for p in self.model.parameters())
        return (f"AlexNet '{cfg.preset}': {nparams:,} parameters; SGD lr {self.optimizer.lr:g}, "
                f"momentum {cfg.momentum:g}, weight decay {cfg.weight_decay:g} "
                f"({'biases too' if cfg.decay_biases else 'not on biases'}), batch "
                f"{cfg.batch_size}; lr / 10 "
                + (f"when validation error stalls for {_epochs(cfg.patience)} (at most 3 times, §5)"
                   if cfg.schedule == "plateau" else f"every {_epochs(cfg.step_size)} (at most 3 times)")
                + f"; {_epochs(cfg.epochs)}, seed {cfg.seed}"
                + (f" ({', '.join(self.from_recipe)}: this data's measured recipe, not the paper's; "
                   "minialex.train.setup.RECIPES)" if self.from_recipe else ""))

    def open_run_folder(self, resume: Optional[Dict]) -> str:
        """Make (or take) the run's folder, lock it, write config.json and start metrics.jsonl."""
        cfg = self.config
        self.out = cfg.out or new_out_dir()
        os.makedirs(self.out, exist_ok=True)
        self.lock = self.lock or acquire_run_lock(self.out)
        self.made_files = not holds_a_run(self.out)   # ours to tidy if stopped before a save
        if cfg.out is None:
            point_latest(self.out)
        if resume is not None:
            inherit_best(os.path.dirname(os.path.abspath(resume["path"])), self.out)
        write_text(os.path.join(self.out, "config.json"), json.dumps(cfg.resolved(), indent=2))
        self.metrics_path = os.path.join(self.out, "metrics.jsonl")
        open_metrics(self.metrics_path, resume, self.step, self.history)
        self.echo(f"writing to {self.out}/ (metrics.jsonl, last.h5 every epoch, best.h5)"
                  + (f"; resumed from {resume['path']} at epoch {self.epoch + 1}, batch "
                     f"{self.batch}" if resume else ""))
        return self.out

    # -- the position in the run, for checkpoints ----------------------------------------------
    def state_dict(self) -> Dict:
        """Where the run stands: epochs done, the next batch, updates done, the epoch's running
        sums and the history of finished epochs."""
        return {"epoch": self.epoch, "batch": self.batch, "step": self.step,
                "sums": dict(self.sums), "history": list(self.history)}

    def load_state_dict(self, state: Dict) -> None:
        self.epoch, self.batch, self.step = (int(state["epoch"]), int(state["batch"]),
                                             int(state["step"]))
        self.sums, self.history = dict(state["sums"]), list(state["history"])

    def _log(self, record: Dict) -> None:
        if not self.writer:
            return
        append_line(self.metrics_path, json.dumps(record))

    # -- checkpoints -----------------------------------------------------------------------
    def save(self, rng_states: Optional[Dict[str, str]] = None) -> Optional[str]:
        """Write last.h5 (atomically) with everything --resume needs. Data-parallel: rank 0
        writes every rank's generator states, the others wait at a barrier until it has."""
        rng_states = self.world.gather_states(rng_states or generator_states(self.model))
        path = os.path.join(self.out, "last.h5") if self.writer else None
        if self.writer:
            save(path, self.model, optimizer=self.optimizer,
                 extra=checkpoint_extra(self, rng_states), epoch=self.epoch, step=self.step,
                 batch=self.batch)
        self.world.barrier()
        self.checkpoint_path = path
        return path

    # -- the loop --------------------------------------------------------------------------
    def _loader(self, train: bool, dataset=None, ten_crop: bool = False):
        cfg = self.config
        shard = (self.world.rank, self.world.size) if self.world.size > 1 else None
        if train:
            return D.DataLoader(self.train_set, cfg.batch_size, input_size=self.model.input_size,
                                train=True, device=self.devices[0], seed=cfg.seed,
                                epoch=self.epoch, start_batch=self.batch, workers=cfg.workers,
                                shard=shard, augment="augmentation" not in cfg.without)
        return D.DataLoader(dataset or self.val_set, cfg.batch_size,
                            input_size=self.model.input_size, train=False,
                            device=self.devices[0], seed=cfg.seed, workers=cfg.workers,
                            stats=self.train_set.stats, shard=shard, ten_crop=ten_crop)

    def _batches_per_epoch(self) -> int:
        n = len(self.train_loader)
        return min(n, self.config.limit_batches) if self.config.limit_batches else n

    def train_step(self, images, labels) -> Tuple[float, int]:
        """One step of §5: forward, the loss, backward, the update. Returns (the loss, how many
        images the network got right). Raises TrainingError when the loss is NaN or infinite."""
        self.model.train()
        logits = self.model(Tensor(images, device=self.devices[0]))
        loss = F.cross_entropy(logits, labels, check_labels=False)   # labels checked when read
        self.optimizer.zero_grad()
        loss.backward()
        with self.counted_together():
            self.optimizer.step()           # the hooks first: data-parallel averages gradients
            # Read the loss only now, once the whole step is queued: on a GPU this is the step's
            # one host synchronisation. If it diverged, the spoiled weights are never saved.
            value = self.finite(loss.item())
        return value, _top1_correct(logits.data, labels)

    @contextlib.contextmanager
    def counted_together(self):
        """From the update until run_epoch has counted the step, a first Ctrl-C waits: weights
        updated but the position not advanced would make a resume repeat this batch. (run_epoch
        lowers the flag once the step is counted; an error lowers it here.)"""
        stop = self.stop
        if stop is not None:
            stop.critical = True
        try:
            yield
        except BaseException:
            if stop is not None:
                stop.critical = False
            raise

    def finite(self, loss: float) -> float:
        """The step's loss, or a TrainingError naming the step where training diverged."""
        if math.isfinite(loss):
            return loss
        kept = (f"the last good checkpoint {self.checkpoint_path} is kept"
                if self.checkpoint_path else "no checkpoint was written yet")
        raise TrainingError(
            f"the loss became {loss} at step {self.step + 1} (epoch {self.epoch + 1}, batch "
            f"{self.batch + 1}) with learning rate {self.optimizer.lr:g}: training diverged; "
            f"{kept}. Try a smaller --lr")

    def run_epoch(self, stop: StopFlag, nb: int) -> bool:
        """Train from self.batch to the end of the epoch; False when stopped by Ctrl-C."""
        bar = self._progress_bar(nb)
        self.train_loader.set_epoch(self.epoch, self.batch)
        loader = iter(self.train_loader) if self.batch < nb else iter(())
        try:
            while self.batch < nb:
                rng = generator_states(self.model)     # the state this step starts from
                if stop.requested if self.world.size == 1 else self.stop_agreed:
                    self._interrupted(rng)
                    return False
                try:
                    images, labels = next(loader)
                    t0 = time.perf_counter()
                    loss, correct, lr = self._warm_step(images, labels)
                except KeyboardInterrupt:
                    if self.world.size > 1:   # ranks not in step: stop at once (run())
                        raise
                    self._interrupted(rng)
                    return False
                # all ranks' images, and Ctrl-C agreed on (one process: as they are)
                loss, correct, n, self.stop_agreed = self.world.step_sums(
                    loss, correct, len(labels), stop.requested)
                self._count(loss, correct, n, time.perf_counter() - t0, lr, nb, bar)
                stop.critical = False        # the step is counted: a Ctrl-C may stop us again
                if self.on_step is not None:
                    try:
                        self.on_step(self.step, loss)
                    except KeyboardInterrupt:
                        self._interrupted(generator_states(self.model))
                        return False
        finally:
            if bar is not None:
                bar.close()
            close = getattr(loader, "close", None)
            if close is not None:
                close()
        return True

    def _warm_step(self, images, labels) -> Tuple[float, int, float]:
        """``train_step`` at this step's learning rate: with --lr-scaling linear, the warm-up's
        share of it (world.py). Returns (loss, correct, the rate used)."""
        lr = self.optimizer.lr
        self.optimizer.lr = used = lr * self.warmup(self.step) if self.warmup else lr
        try:
            with numpy.errstate(over="ignore", invalid="ignore"):  # see finite()
                loss, correct = self.train_step(images, labels)
        finally:
            self.optimizer.lr = lr
        return loss, correct, used

    def _count(self, loss: float, correct: int, n: int, seconds: float, lr: float, nb: int,
               bar) -> None:
        """A finished step: the position, the epoch's sums, the log line every ``log_every``
        steps, and the progress bar."""
        self.step += 1
        self.batch += 1
        self.losses.append(loss)
        for key, value in (("loss", loss * n), ("correct", correct), ("seen", n),
                           ("seconds", seconds)):
            self.sums[key] += value
        if self.step % self.config.log_every == 0 or self.batch == nb:
            self._log({"event": "step", "step": self.step, "epoch": self.epoch + 1,
                       "epoch_float": self.epoch + self.batch / nb, "loss": loss,
                       "top1_error": 1 - correct / n, "lr": lr})
        if bar is not None:
            seen = max(self.sums["seen"], 1)
            bar.set_postfix(loss=f"{self.sums['loss'] / seen:.3f}",
                            acc=f"{100 * self.sums['correct'] / seen:.1f}%",
                            img_s=f"{n / max(seconds, 1e-9):.0f}")
            bar.update(1)

    def _progress_bar(self, nb: int):
        """A tqdm bar over the epoch's batches (rank 0, --progress), or None."""
        if not (self.config.progress and self.writer):
            return None
        from tqdm import tqdm
        return tqdm(total=nb, initial=self.batch, unit="batch", dynamic_ncols=True, leave=False,
                    desc=f"epoch {self.epoch + 1}/{self.config.epochs}",
                    disable=None)   # off when stderr is not a terminal (a log file)

    def _interrupted(self, rng_states) -> None:
        path = self.save(rng_states)
        self.echo(f"interrupted at epoch {self.epoch + 1}, batch {self.batch} (step {self.step}): "
                  f"saved {path}; continue with: "
                  f"{self.world.command} train --resume {path}")

    def end_epoch(self) -> bool:
        """Validate, log, schedule, checkpoint; True when the schedule says stop."""
        cfg = self.config
        with numpy.errstate(over="ignore", invalid="ignore"):  # a blow-up is reported below
            val = evaluate(self.model, self._loader(train=False), cfg.limit_val_batches,
                           progress=cfg.progress and self.writer, desc="validating",
                           reduce=self.world.sum_counts)
        seen = max(self.sums["seen"], 1)
        record = {"event": "epoch", "epoch": self.epoch + 1, "step": self.step,
                  "lr": self.optimizer.lr, "train_loss": self.sums["loss"] / seen,
                  "train_top1_error": 1 - self.sums["correct"] / seen,
                  "val_loss": val.loss, "val_top1_error": val.top1_error,
                  "val_top5_error": val.top5_error,
                  "images_per_s": self.sums["seen"] / max(self.sums["seconds"], 1e-9),
                  "seconds": self.sums["seconds"]}
        if not math.isfinite(val.loss):
            # The last update spoiled the weights (the step's own loss, read before it, was
            # finite): never save them.
            kept = (f"the last good checkpoint {self.checkpoint_path} is kept" if self.checkpoint_path
                    else "no checkpoint was written")
            raise TrainingError(
                f"the validation loss became {val.loss} after epoch {self.epoch + 1} (step "
                f"{self.step}) with learning rate {self.optimizer.lr:g}: training diverged; "
                f"{kept}. Try a smaller --lr")
        best_before = min((h["val_top1_error"] for h in self.history), default=None)
        self.history.append(record)
        self._log(record)
        reduced = self.schedule.step(val.top1_error)
        self.epoch += 1
        self.batch = 0
        self.sums = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
        path = self.save()
        improved = best_before is None or val.top1_error < best_before
        if improved and self.writer:
            self._keep_best(path)
        self.echo(_epoch_line(record, cfg.epochs) + ("  (best)" if improved else ""))
        if reduced:
            why = ("validation error stopped improving" if cfg.schedule == "plateau" else
                   f"{_epochs(cfg.step_size)} at this rate")
            self.echo(f"{why}: learning rate divided by 10, now {self.optimizer.lr:g}"
                      + (" (§5)" if cfg.schedule == "plateau" else ""))
        if self.schedule.finished:
            self.echo("the learning rate was reduced 3 times and the validation error stalled "
                      "again: stopping, as the paper did (§5)")
        return self.schedule.finished

    def _keep_best(self, path: str) -> None:
        """best.h5: a whole copy of the checkpoint just written (a second Ctrl-C waits for it)."""
        stop = self.stop
        if stop is not None:
            stop.critical = True
        try:
            copy_atomic(path, os.path.join(self.out, "best.h5"))
        finally:
            if stop is not None:
                stop.critical = False

    def test_best(self) -> Optional[Dict]:
        """Once training is over: best.h5's errors on the source's test split (the weights were
        chosen on the validation split, so the test images decided nothing), from the centre
        crop and from the paper's ten patches (§4.1: the four corners and the centre, and their
        mirror images, softmax averaged), logged as {"event": "test"}. None without a test split."""
        cfg, best = self.config, os.path.join(self.out, "best.h5")
        try:
            test_set = open_data(cfg.data, "test", cfg.seed, self.base_size, cfg.val_images)
        except (DataError, FileNotFoundError):
            return None
        self.world.barrier()           # best.h5 is whole before any rank reads it
        load(best, model=self.model)
        record = {"event": "test", "step": self.step, "epoch": int(read_meta(best)["epoch"])}
        for key, ten in (("test", False), ("test_ten_crop", True)):
            with numpy.errstate(over="ignore", invalid="ignore"):
                r = evaluate(self.model, self._loader(False, test_set, ten), cfg.limit_val_batches,
                             desc="testing" + (" (10 patches)" if ten else ""),
                             progress=cfg.progress and self.writer,
                             reduce=self.world.sum_counts)
            record.update({"images": r.images, f"{key}_loss": r.loss,
                           f"{key}_top1_error": r.top1_error, f"{key}_top5_error": r.top5_error})
        if self.writer:
            self._log(record)
            self.echo(f"test: top-1 error {100 * record['test_top1_error']:.1f}% from the centre "
                      f"crop, {100 * record['test_ten_crop_top1_error']:.1f}% averaging ten "
                      f"patches (§4.1; top-5 {100 * record['test_top5_error']:.1f}% and "
                      f"{100 * record['test_ten_crop_top5_error']:.1f}%) on {r.images:,} test "
                      f"images, never seen in training, with best.h5 (epoch {record['epoch']}, "
                      "chosen on validation)")
        return record

    def _stopped_at_once(self, stop: StopFlag) -> None:
        """A second Ctrl-C (or SIGTERM) outside a training step (validating, saving): stop at
        once. Checkpoints are written atomically, so the last one is whole."""
        where = (f"the last checkpoint written, {self.checkpoint_path}, is kept; continue "
                 f"with: python cli.py train --resume {self.checkpoint_path}"
                 if self.checkpoint_path else "no checkpoint was written yet")
        again = SIGNALS.get(stop.signum, "Ctrl-C")
        self.echo(f"stopped at once (second {again}, outside a training step): {where}")
        if self.checkpoint_path is None and self.out and self.made_files:
            discard_unstarted_run(self.out)

    def _one_line(self, e: Exception) -> Exception:
        """The error to raise for ``e``: out of memory (CPU or GPU) and a full disk as one line
        that says what to do, else ``e`` itself. A full disk before the first step (config.json)
        leaves no empty run folder behind."""
        cfg = self.config
        if _is_out_of_memory(e):
            on_cpu = isinstance(e, MemoryError) and type(e).__name__ != "OutOfMemoryError"
            where = (f"out of memory on the CPU ({cpu.memory_report(e)})" if on_cpu
                     else "out of GPU memory")
            return TrainingError(
                f"{where} at batch size {cfg.batch_size} (preset '{cfg.preset}'): try "
                f"--batch-size {max(1, cfg.batch_size // 2)}"
                + (", or --preset tiny" if on_cpu and cfg.preset not in ("tiny", None) else "")
                + (f"; the last good checkpoint is {self.checkpoint_path}"
                   if self.checkpoint_path else ""))
        if isinstance(e, WriteError) and self.checkpoint_path:
            return WriteError(f"{e}; once there is room, continue with: python cli.py "
                              f"train --resume {self.checkpoint_path}")
        if isinstance(e, WriteError) and self.made_files and not self.losses:
            discard_unstarted_run(self.out)   # config.json on a full disk: no empty folder
        return e

    def run(self) -> TrainResult:
        cfg = self.config
        stopped = "finished"
        with StopFlag() as stop:   # from the start: a Ctrl-C while the data is read counts too
            self.stop = stop
            try:
                self.setup()
                nb = self._batches_per_epoch()
                self.warmup = self.world.warmup(cfg, nb)
                while self.epoch < cfg.epochs:
                    if not self.run_epoch(stop, nb):
                        stopped = "interrupted"
                        break
                    if self.end_epoch():
                        stopped = "schedule"
                        break
                if stopped != "interrupted" and not self.nothing_to_do:
                    self.test = self.test_best()
            except KeyboardInterrupt:
                stopped = "interrupted"
                self._stopped_at_once(stop)
            except Exception as e:
                error = self._one_line(e)
                if error is e:
                    raise
                raise error from None
            finally:
                if self.lock is not None:   # the folder is free for the next run
                    self.lock.release()
        if self.nothing_to_do:
            self.echo(f"nothing to do: the run has done {_epochs(self.epoch)} already"
                      + ("; the schedule had stopped it (§5)" if self.schedule.finished else
                         f"; give --epochs more than {self.epoch} to train longer"))
        result = TrainResult(self.out, self.checkpoint_path, self.epoch, self.step,
                             list(self.history), list(self.losses), stopped, self.test,
                             stop.exit_status if stopped == "interrupted" else 0)
        best = result.best
        if (best is not None and stopped != "interrupted" and not self.nothing_to_do
                and self.writer):
            self.echo(f"done: best validation top-1 error {100 * best['val_top1_error']:.1f}% "
                      f"(accuracy {100 * (1 - best['val_top1_error']):.1f}%, top-5 error "
                      f"{100 * best['val_top5_error']:.1f}%) at epoch {best['epoch']}; "
                      f"checkpoints in {self.out.rstrip(os.sep)}/")
        return result


def _epoch_line(record: Dict, epochs: int) -> str:
    """An epoch's line on the console, from its record in metrics.jsonl."""
    return (f"epoch {record['epoch']:>3}/{epochs}  train loss {record['train_loss']:.3f} "
            f"err {100 * record['train_top1_error']:5.1f}%  |  val loss {record['val_loss']:.3f} "
            f"top-1 err {100 * record['val_top1_error']:5.1f}%  top-5 err "
            f"{100 * record['val_top5_error']:5.1f}%  |  lr {record['lr']:g}  "
            f"{record['images_per_s']:.0f} img/s")


def _epochs(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def _is_out_of_memory(e: BaseException) -> bool:
    """Out of GPU memory (CuPy's OutOfMemoryError, a MemoryError by that name), or of the CPU's
    (any other MemoryError: numpy's _ArrayMemoryError is one)."""
    if isinstance(e, MemoryError):
        return True
    if cupy is not None:
        try:
            if isinstance(e, cupy.cuda.memory.OutOfMemoryError):
                return True
        except AttributeError:
            pass
    return type(e).__name__ == "OutOfMemoryError"


def train(config: TrainConfig, echo: Callable[[str], None] = print,
          on_step: Optional[Callable[[int, float], None]] = None,
          world: Optional[World] = None) -> TrainResult:
    """Run (or resume) a training job; see the module docstring. ``on_step(step, loss)`` is
    called after every update (tests use it to inject a KeyboardInterrupt); ``world``: the
    processes that train together (default: this one; ``minialex.tools.distributed.world()``)."""
    return Trainer(config, echo=echo, on_step=on_step, world=world).run()
