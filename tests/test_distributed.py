"""Data-parallel training (minialex/tools/distributed.py, issue 17).

Two kinds of tests:
- plain ones, run by ``pytest``: the world of one, the loader's shards, the refused world size,
  and whole jobs started with ``mpiexec`` in a subprocess (an error on one rank, Ctrl-C, ranks
  that differ); these skip without mpi4py and mpiexec (``pip install -e ".[mpi]"``);
- ``mpi``-marked ones, run inside a job of two processes:
  ``mpiexec -n 2 python -m mpi4py -m pytest -m mpi tests/test_distributed.py`` (.ci/run);
  under plain ``pytest`` they skip. They compare across ranks before asserting, so a failure
  fails on every rank instead of leaving one waiting in a collective.
"""

import ctypes
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback

import numpy
import pytest

import minialex
from minialex.tools import distributed
from minialex.data import DataLoader, open_dataset

W = distributed.world()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def in_job(test):
    """An ``mpi`` test: it runs in a job of two processes, and skips elsewhere. A failure on one
    rank prints its traceback and aborts the job: the other rank may be waiting in a collective."""
    @functools.wraps(test)
    def run(*args, **kwargs):
        try:
            return test(*args, **kwargs)
        except BaseException:
            traceback.print_exc(file=sys.__stderr__)   # past pytest's capture
            sys.__stderr__.flush()
            W.comm.Abort(1)
    return pytest.mark.mpi(pytest.mark.skipif(
        W.size != 2,
        reason="runs in a job of two: mpiexec -n 2 python -m mpi4py -m pytest -m mpi")(run))


HAVE_MPIEXEC = shutil.which("mpiexec") is not None and W.size == 1   # not inside a job already
try:
    import mpi4py  # noqa: F401
except ImportError:
    HAVE_MPIEXEC = False
launches = pytest.mark.skipif(not HAVE_MPIEXEC, reason='needs mpiexec and mpi4py: pip install -e ".[mpi]"')
TINY = ["--preset", "tiny", "--train-images", "128", "--val-images", "40", "--batch-size", "16",
        "--no-progress"]


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "OMPI_", "PMIX_", "MPI_", "HYDRA_"))}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    return env


def _job(args, timeout=120, n=2):
    """Run ``mpiexec -n n python -m mpi4py cli.py ARGS``: (return code, seconds, output)."""
    start = time.time()
    p = subprocess.run(["mpiexec", "-n", str(n), sys.executable, "-m", "mpi4py"] + args,
                       cwd=ROOT, env=_clean_env(), capture_output=True, text=True, timeout=timeout)
    return p.returncode, time.time() - start, p.stdout + p.stderr


# --------------------------------------------------------------------------------------------
# A world of one, and the loader's shards (no MPI needed)
# --------------------------------------------------------------------------------------------

def test_a_world_of_one_never_imports_mpi4py():
    code = ("import sys, minialex.train, minialex.tools.cli, minialex.tools.distributed as d; "
            "w = d.world(); assert type(w) is minialex.train.World and w.size == 1; "
            "assert 'mpi4py' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], env=_clean_env(), cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


def test_shards_make_the_global_batch_of_one_process():
    """N ranks at batch B see batch b of one process at batch N·B: the same images, crops, flips
    and lighting, split in rank order; every rank has the same number of batches."""
    ds = open_dataset("builtin", "train", seed=0, base_size=38, num_train=100)
    one = DataLoader(ds, 24, input_size=33, seed=3, epoch=1)
    ranks = [DataLoader(ds, 8, input_size=33, seed=3, epoch=1, shard=(r, 3)) for r in range(3)]
    assert [len(r) for r in ranks] == [len(one)] * 3 == [4] * 3   # 100 // 24, the rest dropped
    for b in range(len(one)):
        assert (numpy.concatenate([r.batch_indices(b) for r in ranks]) == one.batch_indices(b)).all()
        whole, parts = one.augmentation(b), [r.augmentation(b) for r in ranks]
        for field in ("tops", "lefts", "flips", "alphas"):
            assert (numpy.concatenate([getattr(p, field) for p in parts])
                    == getattr(whole, field)).all()
    assert (next(iter(ranks[1]))[0] == next(iter(one))[0][8:16]).all()
    val = open_dataset("builtin", "val", seed=0, base_size=38, num_val=50)
    shards = [DataLoader(val, 8, input_size=33, train=False, shard=(r, 3)) for r in range(3)]
    seen = numpy.concatenate([s.batch_indices(b) for s in shards for b in range(len(s))])
    assert sorted(seen.tolist()) == list(range(50))   # every image once, no padding


def test_resume_in_another_world_size_is_refused(tmp_path):
    from minialex.checkpoint import read_extra
    from minialex.train import TrainConfig, TrainingError, train
    out = tmp_path / "run"
    train(TrainConfig(preset="tiny", train_images=64, val_images=32, batch_size=32, epochs=1,
                      out=str(out), progress=False), echo=lambda _: None)
    assert int(read_extra(str(out / "last.h5"))["train"]["world_size"]) == 1
    _set_world_size(out / "last.h5", 2)
    with pytest.raises(TrainingError, match=r"written by 2 process\(es\), this job has 1"):
        train(TrainConfig(resume=str(out), epochs=2, progress=False), echo=lambda _: None)


def _set_world_size(path, size):
    import h5py
    with h5py.File(path, "r+") as f:
        def visit(name, obj):
            if "world_size" in obj.attrs:
                obj.attrs["world_size"] = size
        f.visititems(visit)


# --------------------------------------------------------------------------------------------
# Whole jobs under mpiexec
# --------------------------------------------------------------------------------------------

@launches
def test_an_error_on_one_rank_ends_the_job_at_once(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text(
        "from minialex.tools import distributed\n"
        "from minialex.train import TrainConfig, train\n"
        "w = distributed.world()\n"
        "def hook(step, loss):\n"
        "    if w.rank == 1 and step == 2:\n"
        "        raise MemoryError('no memory left (test)')\n"
        f"train(TrainConfig(preset='tiny', train_images=128, val_images=40, batch_size=16, "
        f"epochs=3, out={str(tmp_path / 'run')!r}, progress=False), on_step=hook, world=w)\n")
    rc, seconds, out = _job([str(script)], timeout=60)
    assert rc != 0 and seconds < 30, out
    # a MemoryError in a step is the CPU's out-of-memory line (train/loop.py), naming the rank
    assert "error: rank 1 of 2: TrainingError: out of memory on the CPU" in out, out
    assert "Abort(" not in out, out                 # MPICH's own line would only repeat it


@launches
def test_a_user_mistake_under_mpiexec_is_one_line_per_rank_and_no_abort_lines(tmp_path):
    """A mistake every rank meets (a missing dataset) is one 'error:' line per rank, naming it;
    MPICH's 'Abort(1) on node ...' line after it would only repeat it (issue 26, item 9)."""
    rc, seconds, out = _job(["cli.py", "train", *TINY, "--data", str(tmp_path / "nowhere")])
    errors = [l for l in out.splitlines() if l.startswith("error: ")]
    assert rc != 0 and seconds < 30, out
    assert sorted(errors) == [f"error: rank {r} of 2: dataset {tmp_path / 'nowhere'} not found: use "
                              "'builtin', 'fashion-mnist[:DIR]', a folder with train/ and val/, or "
                              "a .h5 cache" for r in (0, 1)], out
    assert "Abort(" not in out, out


@launches
def test_ranks_that_differ_are_refused_before_the_first_step(tmp_path):
    args = ["cli.py", "train", *TINY, "--out", str(tmp_path / "run")]
    start = time.time()
    p = subprocess.run(["mpiexec", "-n", "1", sys.executable, "-m", "mpi4py", *args, ":",
                        "-n", "1", sys.executable, "-m", "mpi4py", *args, "--seed", "1"],
                       cwd=ROOT, env=_clean_env(), capture_output=True, text=True, timeout=60)
    out = p.stdout + p.stderr
    assert p.returncode == 1 and time.time() - start < 30, out
    lines = [l for l in out.splitlines() if l.startswith("error:")]
    assert lines == ["error: rank 1 differs from rank 0 in seed: 1 against 0; every process "
                     "must run the same command on the same data"], out
    assert not (tmp_path / "run" / "metrics.jsonl").exists() or \
        "step" not in (tmp_path / "run" / "metrics.jsonl").read_text()


@launches
def test_ctrl_c_stops_every_rank_and_saves_once(tmp_path):
    run = tmp_path / "run"
    p = subprocess.Popen(["mpiexec", "-n", "2", sys.executable, "-m", "mpi4py", "cli.py", "train",
                          *TINY, "--epochs", "500", "--schedule", "step", "--out", str(run)], cwd=ROOT,
                         env=_clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    metrics = run / "metrics.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count('"epoch"') >= 2):
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 130, out
    assert out.count("interrupted at epoch") == 1, out
    from minialex.checkpoint import read_extra
    state = read_extra(str(run / "last.h5"))["train"]
    assert int(state["world_size"]) == 2 and int(state["step"]) > 0
    assert json.loads(state["config"])["batch_size"] == 16


# --------------------------------------------------------------------------------------------
# Inside a job of two processes
# --------------------------------------------------------------------------------------------

def _same_everywhere(value) -> bool:
    return len(set(W.comm.allgather(value))) == 1


def _tiny_model(seed, dtype=numpy.float32):
    from minialex.optim import SGD
    from minialex.models import AlexNet
    model = AlexNet(num_classes=10, preset="tiny", seed=seed, dtype=dtype,
                             devices=("cpu", "cpu"))
    return model, SGD(model.named_parameters(), lr=0.05)


@pytest.fixture
def shared_tmp(tmp_path):
    """Rank 0's tmp_path on every rank (one run folder for the job)."""
    return W.comm.bcast(str(tmp_path), root=0)


@in_job
def test_every_rank_starts_from_rank_0s_bytes():
    model, opt = _tiny_model(seed=W.rank)                 # different weights on purpose
    for v in opt.velocity.values():
        v[...] = W.rank + 1.0
    W.use_devices(model.devices)
    W.broadcast_start(model, opt)
    reference, _ = _tiny_model(seed=0)
    arrays = [p.data for _, p in opt.params] + list(opt.velocity.values())
    assert _same_everywhere(distributed.checksum(arrays))
    assert all((p.data == q.data).all() for p, q in zip(model.parameters(), reference.parameters()))
    assert all((v == 1.0).all() for v in opt.velocity.values())


def _step(model, opt, images, labels, world=None):
    from minialex import functional as F
    from minialex.autograd import Tensor
    model.eval()                      # dropout off (the paper's x0.5), so every rank agrees
    loss = F.cross_entropy(model(Tensor(images)), labels)
    opt.zero_grad()
    loss.backward()
    if world is not None:
        world.average_gradients(opt)
    opt.step()


@in_job
def test_two_processes_at_b_equal_one_at_2b_and_stay_bit_identical():
    """float64, no dropout, centre crops: 3 steps of 2 x 8 images against 3 of 16 in one
    process; every rank's weights the same bytes after each step."""
    ds = open_dataset("builtin", "train", seed=0, base_size=38, num_train=64)
    mine = DataLoader(ds, 8, input_size=33, seed=0, augment=False, shard=(W.rank, 2))
    whole = DataLoader(ds, 16, input_size=33, seed=0, augment=False)
    model, opt = _tiny_model(0, numpy.float64)
    alone, alone_opt = _tiny_model(0, numpy.float64)
    W.use_devices(model.devices)
    W.broadcast_start(model, opt)
    sums = []
    for (x, y), (xx, yy), _ in zip(mine, whole, range(3)):
        _step(model, opt, x.astype(numpy.float64), y, W)
        _step(alone, alone_opt, xx.astype(numpy.float64), yy)
        sums.append(distributed.checksum(p.data for p in model.parameters()))
    assert _same_everywhere(tuple(sums))
    gap = max(float(abs(p.data - q.data).max()) for p, q in zip(model.parameters(), alone.parameters()))
    assert gap < 1e-12, gap


@in_job
def test_sharded_validation_counts_equal_one_process():
    from minialex.train.evaluate import evaluate
    val = open_dataset("builtin", "val", seed=0, base_size=38, num_val=45)   # uneven on purpose
    model, _ = _tiny_model(0)
    mine = evaluate(model, DataLoader(val, 8, input_size=33, train=False, shard=(W.rank, 2)),
                    reduce=W.sum_counts)
    alone = evaluate(model, DataLoader(val, 8, input_size=33, train=False))
    assert (mine.images, mine.top1_error, mine.top5_error) == (45, alone.top1_error, alone.top5_error)
    assert mine.loss == pytest.approx(alone.loss, rel=1e-6)   # summed in another order


class StandInNccl:
    """cupy.cuda.nccl's calls on host memory, summed over MPI: tests NcclComm's id exchange,
    packing and order without a GPU (the real one runs under pytest -m gpu)."""

    NCCL_FLOAT32, NCCL_FLOAT64, NCCL_SUM = 7, 8, 0
    ids, calls = [], []

    @staticmethod
    def get_unique_id():
        assert W.rank == 0, "only rank 0 makes the id"
        return tuple(int(i) for i in numpy.random.default_rng().integers(-128, 128, 128))

    class NcclCommunicator:
        def __init__(self, size, uid, rank):
            assert (size, rank) == (W.size, W.rank)
            StandInNccl.ids.append(uid)

        def _array(self, ptr, count, kind):
            c = {StandInNccl.NCCL_FLOAT32: ctypes.c_float, StandInNccl.NCCL_FLOAT64: ctypes.c_double}[kind]
            return numpy.ctypeslib.as_array((c * count).from_address(ptr))

        def allReduce(self, send, recv, count, kind, op, stream):
            assert send == recv and op == StandInNccl.NCCL_SUM
            buf = self._array(recv, count, kind)
            StandInNccl.calls.append(buf.copy())
            W.comm.Allreduce(distributed.MPIComm(W.comm).in_place, buf)

        def bcast(self, ptr, count, kind, root, stream):
            W.comm.Bcast(self._array(ptr, count, kind), root=root)


@in_job
def test_nccl_communicator_through_a_stand_in():
    from minialex.autograd import Tensor
    model, opt = _tiny_model(seed=W.rank)
    nccl = distributed.NcclComm(W.comm, model.devices, nccl=StandInNccl)
    assert len(StandInNccl.ids) == 1 and _same_everywhere(StandInNccl.ids[0])   # id exchange
    rng = numpy.random.default_rng(W.rank)
    for _, p in opt.params:
        p.grad = rng.standard_normal(p.shape).astype(numpy.float32)
    packed = numpy.concatenate([p.grad.ravel() for _, p in opt.params])   # the optimizer's order
    expected = sum(W.comm.allgather(packed)) / 2
    W.grads = nccl
    W.average_gradients(opt)
    assert len(StandInNccl.calls) == 1 and (StandInNccl.calls[0] == packed).all()
    assert numpy.array_equal(numpy.concatenate([p.grad.ravel() for _, p in opt.params]), expected)
    assert nccl.bytes_sent == packed.nbytes
    W.broadcast_start(model, opt)
    assert _same_everywhere(distributed.checksum(p.data for p in model.parameters()))
    del Tensor


def _train(out, **options):
    from minialex.train import TrainConfig, Trainer
    cfg = dict(preset="tiny", train_images=128, val_images=40, batch_size=16, epochs=2,
               out=out, progress=False, log_every=1)
    cfg.update(options)
    hook = options.pop("on_step", None)
    trainer = Trainer(TrainConfig(**{k: v for k, v in cfg.items() if k != "on_step"}),
                      echo=lambda _: None, on_step=hook, world=distributed.world())
    return trainer, trainer.run()


@in_job
def test_a_run_one_writer_its_checkpoint_and_an_exact_resume(shared_tmp):
    """Dropout and augmentation on: after two epochs every rank holds the same bytes; rank 0
    alone wrote the folder, with every rank's dropout streams (each its own); interrupted at
    step 5 and resumed, the run computes the same losses bit for bit."""
    from minialex.checkpoint import read_extra
    full_dir = os.path.join(shared_tmp, "full")
    trainer, full = _train(full_dir)
    assert full.steps == 8 and _same_everywhere(full.steps)          # 128 // 32 per epoch
    assert _same_everywhere(distributed.checksum(p.data for p in trainer.model.parameters()))
    assert _same_everywhere(tuple(full.losses))
    extra = read_extra(os.path.join(full_dir, "last.h5"))
    assert int(extra["train"]["world_size"]) == 2
    assert extra["rng"]["dropout_generators.0"] != extra["rng"]["rank1.dropout_generators.0"]
    records = [json.loads(l) for l in open(os.path.join(full_dir, "metrics.jsonl"))]
    assert sum(r["event"] == "step" for r in records) == 8          # written once, by rank 0
    assert [r["epoch"] for r in records if r["event"] == "epoch"] == [1, 2]
    assert (trainer.lock is not None) == (W.rank == 0)               # rank 0 alone took the lock

    def stop_at_5(step, loss):
        if step == 5:
            raise KeyboardInterrupt
    part_dir = os.path.join(shared_tmp, "part")
    _, first = _train(part_dir, on_step=stop_at_5)
    assert first.stopped == "interrupted" and first.steps == 5
    _, rest = _train(None, resume=part_dir)
    assert first.losses + rest.losses == full.losses
    assert _same_everywhere(tuple(rest.losses))


@in_job
def test_linear_lr_scaling_warms_up_to_n_times_the_rate(shared_tmp):
    trainer, result = _train(os.path.join(shared_tmp, "linear"), lr_scaling="linear", epochs=1)
    assert trainer.optimizer.lr == pytest.approx(0.02)
    assert trainer.warmup(0) == 0.5 and trainer.warmup(4) == 1.0   # 1 warm-up epoch of 4 steps
    log = [json.loads(l) for l in open(os.path.join(shared_tmp, "linear", "metrics.jsonl"))]
    assert [r["lr"] for r in log if r["event"] == "step"] == pytest.approx(
        [0.01, 0.0125, 0.015, 0.0175])                               # the rate each step used


# --------------------------------------------------------------------------------------------
# The real NCCL path (pytest -m gpu; not run in the session that wrote it: no GPU there)
# --------------------------------------------------------------------------------------------

@pytest.mark.gpu
def test_nccl_on_a_real_gpu():
    """cupy.cuda.nccl's own calls in a world of one on cuda:0: the mean of one rank is itself."""
    if not minialex.gpu_available() or not HAVE_MPIEXEC:
        pytest.skip("needs CuPy, a CUDA GPU and mpi4py")
    import cupy
    from mpi4py import MPI
    from minialex.models import AlexNet
    from minialex.optim import SGD
    model = AlexNet(num_classes=10, preset="tiny", seed=0, devices=("cuda:0", "cuda:0"))
    opt = SGD(model.named_parameters(), lr=0.01)
    w = distributed.MPIWorld(MPI.COMM_WORLD)
    assert "NCCL" in w.use_devices(model.devices)
    for _, p in opt.params:
        p.grad = cupy.full(p.shape, 3.0, dtype=p.data.dtype)
    w.average_gradients(opt)
    assert all(float(abs(p.grad - 3.0).max()) == 0 for _, p in opt.params)
    before = distributed.checksum(p.data for _, p in opt.params)
    w.broadcast_start(model, opt)
    assert distributed.checksum(p.data for _, p in opt.params) == before


@pytest.mark.gpu
@launches
def test_two_gpu_processes_train(tmp_path):
    if minialex.gpu_count() < 2:
        pytest.skip("needs two GPUs")
    rc, _, out = _job(["cli.py", "train", *TINY, "--devices", "cuda", "--epochs", "1",
                       "--out", str(tmp_path / "run")], timeout=300)
    assert rc == 0, out
    assert "rank 0 on" in out and "cuda:1" in out and "NCCL allreduce" in out, out
