"""The processes a run trains on. One process is this class, and it does nothing.

Data-parallel training (``minialex.tools.distributed``: N processes under MPI, one model) is a
subclass of ``World``; the training loop calls these methods at the same places either way, so it
has no branch of its own for many processes:

- ``start``: every rank begins from rank 0's weights, and gradient averaging becomes one of the
  optimizer's hooks (it runs after ``backward``, before the update), as ChainerMN wraps an
  optimizer;
- ``step_sums`` / ``sum_counts``: a step's loss and counts, validation's counts, over all ranks;
- ``gather_states`` / ``own_states``: the dropout generators' states, for rank 0's checkpoint;
- ``share`` / ``barrier``: rank 0's answer to everyone, and a wait for all.

A World of one process returns what it is given. Rank 0 (``writer``) alone prints and writes.
"""

from __future__ import annotations

from typing import Dict, Optional

from .resume import TrainingError


class World:
    """One process: rank 0 of 1, the writer."""

    rank, size = 0, 1
    #: How to run the same command again (the resume hint after Ctrl-C).
    command = "python cli.py"

    @property
    def writer(self) -> bool:
        """The process that prints, logs and writes checkpoints: rank 0."""
        return self.rank == 0

    def map_devices(self, spec: Optional[str]) -> Optional[str]:
        """--devices as this process reads it (a world of many gives each rank its GPU)."""
        return spec

    def describe(self, cfg, devices) -> list:
        """Lines the run's banner gains (how many processes, where each runs)."""
        return []

    def lr_factor(self, cfg) -> int:
        """The factor on the learning rate of a new run (--lr-scaling linear: the world size)."""
        return 1

    def check_start(self, cfg, train_set, val_set) -> None:
        """Before the first step: every rank runs the same command on the same data."""

    def check_resume(self, resume: Optional[Dict]) -> None:
        """A checkpoint continues only in the world size it was written in (the batch order)."""
        if resume is None:
            return
        stored = int(resume["extra"]["train"].get("world_size", 1))
        if stored != self.size:
            raise TrainingError(
                f"{resume['path']} was written by {stored} process(es), this job has {self.size}:"
                f" the global batch and the data order depend on it; resume with mpiexec -n "
                f"{stored}, or start a new run")

    def start(self, model, optimizer, seed: int, rng_states: Optional[Dict[str, str]]) -> None:
        """Before the first step: the same weights on every rank, each rank's own dropout
        streams, and the gradients averaged at every step (an optimizer hook)."""

    def warmup(self, cfg, steps_per_epoch: int):
        """The learning rate's factor by step during a warm-up, or None (no warm-up)."""
        return None

    def step_sums(self, loss: float, correct: int, n: int, stop: bool):
        """(mean loss, correct, images, whether any rank asked to stop) over all ranks."""
        return loss, correct, n, stop

    def sum_counts(self, values):
        """Validation's (loss sum, top-1 hits, top-5 hits, images) summed over the ranks."""
        return values

    def gather_states(self, states: Dict[str, str]) -> Optional[Dict[str, str]]:
        """Every rank's generator states, for rank 0's checkpoint."""
        return states

    def own_states(self, states: Dict[str, str]) -> Dict[str, str]:
        """This rank's generator states out of a checkpoint's."""
        return states

    def share(self, value):
        """Rank 0's ``value``, on every rank."""
        return value

    def barrier(self) -> None:
        """Wait until every rank is here."""
