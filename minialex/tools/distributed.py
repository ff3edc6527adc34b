"""Data-parallel training: one model replicated on N processes started by MPI, as in ChainerMN.

    pip install -e ".[mpi]" && mpiexec -n 2 python -m mpi4py cli.py train

The rules (each one a test in tests/test_distributed.py; docs/distributed.md says more):

- A world of one (no mpiexec, or mpi4py missing) is the single process of before: ``world()``
  returns ``minialex.train.world.World()``, which does nothing, and mpi4py is imported only when
  an MPI launcher's variables are set. ``MPIWorld`` here is its subclass for N processes.
- Same start: every rank builds the model from the seed (or reads the checkpoint), then rank 0's
  parameters and momentum buffers are broadcast and a checksum of their bytes is compared.
- Same update: after backward, the gradients are packed in the optimizer's parameter order into
  one flat buffer per (device, dtype), summed by one allreduce each and divided by N. Every rank
  applies the same SGD step to the same bytes, so the weights stay bit-identical.
- Data (``DataLoader(shard=(rank, N))``): the epoch's order is the single process's, a function
  of (seed, epoch); global batch b holds N·B images and rank r takes the r-th B of them, with
  their crops, flips and lighting drawn for the whole global batch, so N processes at batch B
  see what one process at batch N·B sees. Dropout generators are seeded by (seed, rank).
- Validation: rank r scores images r, r+N, r+2N, ... (no padding); the counts are summed.
- One writer: rank 0 prints, logs, checkpoints and holds the run lock; the others hand it their
  generator states and wait at a barrier after each save.
- Failures: an uncaught error prints one line naming the rank and calls ``Abort``, so no rank
  waits forever in a collective; Ctrl-C is agreed at every step (the flag rides in the step's
  sum of loss and counts), so all ranks stop after the same step and rank 0 saves once.
- GPUs: arrays on a GPU never go through MPI (the pip wheels are not CUDA-aware). NCCL
  (``cupy.cuda.nccl``) sums them; rank 0 makes the NCCL unique id and MPI broadcasts it.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from typing import Dict, List, Optional

import numpy

from ..backend import as_numpy, get_array_module, gpu_available
from ..models.common import dropout_generator
from ..train.resume import TrainingError
from ..train.rng_state import restore_generator_states
from ..train.world import World


#: Variables an MPI launcher sets in every process it starts (MPICH/Hydra, Open MPI, Slurm's PMI).
LAUNCHER_VARIABLES = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK")

_WORLD = None


class WorldError(TrainingError):
    """Every rank found the same problem (ranks that differ): rank 0 alone reports it."""


def world():
    """The job's World: ``MPIWorld``, N processes under MPI, or ``World()``, a world of one."""
    global _WORLD
    if _WORLD is None:
        if "mpi4py.MPI" not in sys.modules and not any(v in os.environ for v in LAUNCHER_VARIABLES):
            return World()
        try:
            from mpi4py import MPI
        except ImportError:
            return World()
        if MPI.COMM_WORLD.Get_size() == 1:
            return World()
        _WORLD = MPIWorld(MPI.COMM_WORLD)
        sys.excepthook = _WORLD.excepthook
    return _WORLD


class MPIComm:
    """Flat host buffers (NumPy) through MPI, with a count of the bytes each rank sends in."""

    name = "MPI"

    def __init__(self, comm):
        from mpi4py import MPI
        self.comm, self.sum, self.bytes_sent = comm, MPI.SUM, 0
        self.in_place = MPI.IN_PLACE

    def allreduce(self, buf, device=None) -> None:
        self.comm.Allreduce(self.in_place, buf, op=self.sum)
        self.bytes_sent += buf.nbytes

    def bcast(self, buf, device=None) -> None:
        self.comm.Bcast(buf, root=0)
        self.bytes_sent += buf.nbytes if self.comm.rank == 0 else 0


class NcclComm:
    """The same two calls between GPUs through NCCL: one NCCL communicator per device slot of a
    process (column 0's GPUs, column 1's), each from a unique id that rank 0 makes and MPI
    broadcasts (ChainerMN's pure_nccl). ``nccl``: ``cupy.cuda.nccl`` or a stand-in."""

    name = "NCCL"

    def __init__(self, comm, devices, nccl=None):
        if nccl is None:
            from cupy.cuda import nccl
        self.nccl, self.bytes_sent, self.comms = nccl, 0, {}
        for d in dict.fromkeys(devices):
            uid = comm.bcast(nccl.get_unique_id() if comm.rank == 0 else None, root=0)
            with d:
                self.comms[str(d)] = nccl.NcclCommunicator(comm.size, uid, comm.rank)
        self.rank = comm.rank

    def _args(self, buf):
        kind = {"float32": self.nccl.NCCL_FLOAT32, "float64": self.nccl.NCCL_FLOAT64}[
            buf.dtype.name]
        if isinstance(buf, numpy.ndarray):               # the CPU stand-in of the tests
            return buf.ctypes.data, buf.size, kind, 0
        import cupy
        return buf.data.ptr, buf.size, kind, cupy.cuda.get_current_stream().ptr

    def allreduce(self, buf, device) -> None:
        ptr, count, kind, stream = self._args(buf)
        self.comms[str(device)].allReduce(ptr, ptr, count, kind, self.nccl.NCCL_SUM, stream)
        self.bytes_sent += buf.nbytes

    def bcast(self, buf, device) -> None:
        ptr, count, kind, stream = self._args(buf)
        self.comms[str(device)].bcast(ptr, count, kind, 0, stream)
        self.bytes_sent += buf.nbytes if self.rank == 0 else 0


def _in_buckets(arrays, devices, call) -> list:
    """Pack ``arrays`` into one flat buffer per (device, dtype), keeping their order (the fixed
    buckets), run ``call(flat, device)`` on each, and return the arrays' new values: views of
    the buffers, in the order given."""
    groups: Dict[tuple, list] = {}
    for i, (a, d) in enumerate(zip(arrays, devices)):
        groups.setdefault((str(d), a.dtype.str), []).append(i)
    out = [None] * len(arrays)
    for idx in groups.values():
        device = devices[idx[0]]
        with device:
            flat = get_array_module(arrays[idx[0]]).concatenate([arrays[i].ravel() for i in idx])
            call(flat, device)
            offset = 0
            for i in idx:
                out[i] = flat[offset:offset + arrays[i].size].reshape(arrays[i].shape)
                offset += arrays[i].size
    return out


def checksum(arrays) -> str:
    """SHA-256 of the arrays' bytes, in order: equal on two ranks only if every byte is."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(numpy.ascontiguousarray(as_numpy(a)).tobytes())
    return h.hexdigest()


class MPIWorld(World):
    """N processes under MPI: rank, size, rank within the node, and what training asks of them
    (``minialex.train.world`` says when the loop calls each method)."""

    def __init__(self, comm, grads=None):
        self.comm, self.rank, self.size = comm, comm.Get_rank(), comm.Get_size()
        from mpi4py import MPI
        self.local_rank = comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()
        self.host = MPI.Get_processor_name()
        self.command = f"mpiexec -n {self.size} python -m mpi4py cli.py"   # for hints
        self.grads = grads          # MPIComm or NcclComm, chosen by use_devices
        self.steps = MPIComm(comm)  # the per-step sums of loss, counts and the Ctrl-C flag

    # -- start -------------------------------------------------------------------------------
    def map_devices(self, spec: Optional[str]) -> Optional[str]:
        """'cuda' -> this process's GPU, cuda:<rank in node>; 'cuda,cuda' -> cuda:2r,cuda:2r+1
        (a column per GPU). No --devices with a GPU present means 'cuda'. Others: as given."""
        r, given = self.local_rank, (spec or ("cuda" if gpu_available() else "")).replace(" ", "")
        return {"cuda": f"cuda:{r}", "cuda,cuda": f"cuda:{2 * r},cuda:{2 * r + 1}"}.get(given, spec)

    def use_devices(self, devices, nccl=None) -> str:
        """Choose the gradients' communicator (NCCL on GPUs, MPI on the CPU); one line that says
        where each rank runs."""
        self.grads = (NcclComm(self.comm, devices, nccl) if any(d.is_cuda for d in devices)
                      else MPIComm(self.comm))
        places = self.comm.allgather(f"rank {self.rank} on {self.host} "
                                     + ",".join(str(d) for d in dict.fromkeys(devices)))
        return "; ".join(places) + f"; gradients summed by {self.grads.name} allreduce"

    def describe(self, cfg, devices) -> list:
        """The first lines of a run: world size, per-process and global batch, lr scaling, and
        where each rank runs (choosing the gradients' communicator)."""
        b, n = cfg.batch_size, self.size
        lr = (f"lr scaling linear (Goyal et al. 2017): {cfg.lr:g} x {n} = {cfg.lr * n:g}, reached "
              f"after {warmup_epochs(cfg.epochs)} warm-up epoch(s)" if cfg.lr_scaling == "linear"
              else f"lr scaling none (lr {cfg.lr:g} as given; --lr-scaling linear: x {n})")
        return [f"data-parallel: {n} processes (MPI), batch {b} per process, {b * n} in all; {lr}",
                self.use_devices(devices)]

    def lr_factor(self, cfg) -> int:
        return self.size if cfg.lr_scaling == "linear" else 1

    def check_resume(self, resume) -> None:
        try:
            super().check_resume(resume)
        except TrainingError as e:     # every rank found it: rank 0 alone reports it
            raise WorldError(str(e)) from None

    def check_start(self, cfg, train_set, val_set) -> None:
        """Before the first step: enough images for one global batch, and every rank's options
        and data the same as rank 0's (else a WorldError on every rank, reported once)."""
        if len(train_set) < cfg.batch_size * self.size or len(val_set) < self.size:
            raise TrainingError(f"{len(train_set)} training and {len(val_set)} validation images "
                                f"are too few for {self.size} processes at --batch-size "
                                f"{cfg.batch_size} ({cfg.batch_size * self.size} in all)")
        facts = {k: v for k, v in cfg.resolved().items()
                 if k not in ("out", "resume", "devices", "workers", "progress")}
        facts.update(training_images=len(train_set), validation_images=len(val_set),
                     classes=list(train_set.classes), labels=checksum([train_set.labels]))
        everyone = self.comm.allgather(facts)
        for r, mine in enumerate(everyone):
            for key, value in everyone[0].items():
                if mine.get(key) != value:
                    raise WorldError(f"rank {r} differs from rank 0 in {key}: {mine.get(key)!r} "
                                     f"against {value!r}; every process must run the same "
                                     "command on the same data")

    def start(self, model, optimizer, seed, rng_states) -> None:
        """Per-rank dropout streams (or, on --resume, this rank's saved ones), rank 0's weights
        and momentum everywhere, and the gradients averaged at every step (an optimizer hook)."""
        if self.rank > 0:
            seqs = numpy.random.SeedSequence([seed, self.rank]).spawn(
                len(model.dropout_generators))
            model.dropout_generators = tuple(dropout_generator(s, d)
                                             for s, d in zip(seqs, model.devices))
        if rng_states is not None:
            restore_generator_states(model, self.own_states(rng_states))
        self.broadcast_start(model, optimizer)
        optimizer.hooks.append(self.average_gradients)

    def warmup(self, cfg, steps_per_epoch: int):
        """With linear scaling, the factor on the scaled lr at each step: 1/N rising to 1 over
        the warm-up epochs (Goyal et al. 2017); None without."""
        if cfg.lr_scaling != "linear":
            return None
        steps = warmup_epochs(cfg.epochs) * steps_per_epoch
        return lambda step: (1 + (self.size - 1) * min(step / steps, 1.0)) / self.size

    def broadcast_start(self, model, optimizer) -> None:
        """Give every rank rank 0's parameters and momentum buffers, then compare checksums."""
        arrays = [p.data for _, p in optimizer.params]
        arrays += [optimizer.velocity[n] for n, _ in optimizer.params]
        devices = [p.device for _, p in optimizer.params] * 2
        for a, new in zip(arrays, _in_buckets(arrays, devices, self.grads.bcast)):
            a[...] = new
        sums = self.comm.allgather(checksum(arrays))
        odd = [r for r, s in enumerate(sums) if s != sums[0]]
        if odd:
            raise RuntimeError(f"rank {odd[0]}'s weights differ from rank 0's after the broadcast")

    # -- each step -----------------------------------------------------------------------------
    def average_gradients(self, optimizer) -> None:
        """Replace every gradient by the mean over the ranks (module docstring)."""
        params = [p for _, p in optimizer.params if p.grad is not None]

        def mean(flat, device):
            self.grads.allreduce(flat, device)
            flat /= self.size

        grads = _in_buckets([p.grad for p in params], [p.device for p in params], mean)
        for p, g in zip(params, grads):
            p.grad = g

    def step_sums(self, loss: float, correct: int, n: int, stop: bool):
        """(mean loss, correct, images, any rank asked to stop) over all ranks for one step."""
        v = numpy.array([loss * n, correct, n, float(stop)])
        self.steps.allreduce(v)
        return v[0] / v[2], int(v[1]), int(v[2]), bool(v[3])

    def sum_counts(self, values: numpy.ndarray) -> numpy.ndarray:
        """Validation's (loss sum, top-1 hits, top-5 hits, images) summed over the ranks."""
        values = numpy.array(values, dtype=numpy.float64)
        self.steps.allreduce(values)
        return values

    # -- saves -----------------------------------------------------------------------------------
    def gather_states(self, states: Dict[str, str]) -> Optional[Dict[str, str]]:
        """Every rank's generator states for rank 0's checkpoint (rank r's keys as 'rankR.key')."""
        everyone = self.comm.gather(states, root=0)
        if self.rank != 0:
            return None
        merged = dict(everyone[0])
        for r, s in enumerate(everyone[1:], 1):
            merged.update({f"rank{r}.{k}": v for k, v in s.items()})
        return merged

    def own_states(self, states: Dict[str, str]) -> Dict[str, str]:
        if self.rank == 0:
            return states
        prefix = f"rank{self.rank}."
        return {k[len(prefix):]: v for k, v in states.items() if k.startswith(prefix)}

    def barrier(self) -> None:
        self.comm.Barrier()

    def share(self, value):
        return self.comm.bcast(value, root=0)

    def excepthook(self, kind, value, tb) -> None:
        """One line naming the rank, then Abort: every rank ends, none waits in a collective."""
        if "--debug" in sys.argv:
            sys.__excepthook__(kind, value, tb)
        _say(f"error: rank {self.rank} of {self.size}: {kind.__name__}: {value}")
        if "--debug" not in sys.argv:
            _quiet_abort()
        self.comm.Abort(1)


def warmup_epochs(epochs: int) -> int:
    """Epochs of linear warm-up: Goyal et al.'s 5 of 90, fewer for short runs."""
    return min(5, max(1, epochs // 6))


def error_line(message: str, error: BaseException) -> Optional[str]:
    """The CLI's one-line error: the rank named in a world of many; None on ranks > 0 for a
    WorldError, which every rank found and rank 0 reports (all wait until it has)."""
    w = _WORLD
    if w is None:
        return f"error: {message}"
    if isinstance(error, WorldError):
        if w.rank == 0:
            sys.stderr.write(f"error: {message}\n")
            sys.stderr.flush()
        w.barrier()
        return None
    from mpi4py.run import set_abort_status
    set_abort_status(1)      # at exit, Abort ends the other ranks, even without -m mpi4py
    _say(f"error: rank {w.rank} of {w.size}: {message}")
    _quiet_abort()
    return None


def _quiet_abort() -> None:
    """Once this rank's one line is out, MPICH's own 'Abort(1) on node ...' line, which MPI_Abort
    prints per rank at exit, would only repeat it: send this process's stderr to /dev/null."""
    sys.stderr.flush()
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    except OSError:
        pass


def _say(line: str) -> None:
    """Write an error line, and give mpiexec a moment to pass it on before Abort tears the job
    down (without the pause the line is sometimes lost)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    time.sleep(0.5)
