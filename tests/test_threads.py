"""A CPU run is deterministic line for line whatever the thread count: one training step of the
tiny net, and of the paper's, on 1, 2 and 3 threads gives the same loss and the same gradients,
bit for bit.

Every op that shares its work among threads must cut it the same way on any count wherever the
pieces' results are added up (a float sum rounds by how its terms are grouped). Before this test,
tiny's conv1 summed its weight gradient over 3 chunks of the batch on one thread and 4 on two,
and the two runs drifted apart from the first step (mini's conv2 too: 5 chunks against 6).

Also here: the rest of the CPU module's promises (``minialex.cpu``): ``in_parallel`` returns once
every piece is done and not later, and ``blas_kernels`` names the BLAS's kernels that ran."""

import os
import platform
import re
import subprocess
import sys
import threading
import time

import numpy
import pytest

import minialex
import minialex.cpu
import minialex.functional as F
from minialex.models import AlexNet
from minialex.models.presets import PRESETS
from minialex.optim import SGD


def one_step(preset, batch, threads):
    """(loss, {name: gradient}, {name: weight after the update}) of one step on ``threads``."""
    minialex.cpu.configure(threads)
    rng = numpy.random.default_rng(0)
    side = PRESETS[preset].input_size
    model = AlexNet(num_classes=10, preset=preset, devices=("cpu", "cpu"), seed=0)
    model.train()
    opt = SGD(model.named_parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = minialex.Tensor((rng.standard_normal((batch, 3, side, side)) * 60).astype(numpy.float32))
    loss = F.cross_entropy(model(x), rng.integers(0, 10, batch), check_labels=False)
    loss.backward()
    grads = {name: p.grad.copy() for name, p in model.named_parameters()}
    opt.step()
    return float(loss.data), grads, {name: p.data.copy() for name, p in model.named_parameters()}


@pytest.fixture
def restore_threads():
    threads = minialex.cpu.THREADS
    yield
    minialex.cpu.configure(threads)


@pytest.mark.parametrize("preset,batch", [
    ("tiny", 128),
    ("paper", 8),      # Winograd's conv2-conv5 and the fc layers' products cut into pieces
])
def test_one_step_is_the_same_on_one_two_and_three_threads(restore_threads, preset, batch):
    runs = [one_step(preset, batch, threads) for threads in (1, 2, 3)]
    loss, grads, weights = runs[0]
    for threads, (other_loss, other_grads, other_weights) in zip((2, 3), runs[1:]):
        assert other_loss == loss, threads
        differ = [name for name in grads if not numpy.array_equal(grads[name], other_grads[name])]
        assert not differ, f"{threads} threads: other gradients of {differ}"
        differ = [name for name in weights
                  if not numpy.array_equal(weights[name], other_weights[name])]
        assert not differ, f"{threads} threads: other weights of {differ}"


@pytest.mark.parametrize("r,d,m", [(16, 4096, 1024),    # dx = dy @ W: W the largest, cut by columns
                                   (1024, 4096, 16),    # y.T = W @ x.T: W the largest, by rows
                                   (1024, 16, 4096)])   # dW = dy.T @ x: the result, by rows
def test_parallel_matmul_gives_the_same_bits_on_any_number_of_threads(rng, monkeypatch, r, d, m):
    """The fully connected layers' products above the split line (2**25 multiply-adds), shared
    among 1, 2 and 3 threads, give the same bits, and a @ b up to rounding. (Not always a @ b's
    bits: OpenBLAS may round a row otherwise in a call with fewer rows, cpu.PIECES.)"""
    a = rng.standard_normal((r, d)).astype(numpy.float32)
    b = rng.standard_normal((d, m)).astype(numpy.float32)
    assert r * d * m >= 1 << 25
    runs = []
    for threads in (1, 2, 3):
        monkeypatch.setattr(minialex.cpu, "THREADS", threads)
        runs.append(minialex.cpu.parallel_matmul(a, b))
        numpy.testing.assert_array_equal(runs[-1], runs[0])
    numpy.testing.assert_allclose(runs[0], a.astype(float) @ b, rtol=1e-4, atol=1e-3)


def test_blas_kernels_names_the_kernels_and_the_variable_that_chose_them(monkeypatch):
    """The benchmarks and `info` say which OpenBLAS kernels run the GEMMs: on a CPU with AVX-512
    the Haswell kernels that OPENBLAS_CORETYPE=Haswell forces ran them at half the rate."""
    if minialex.cpu._OPENBLAS is None:
        assert minialex.cpu.blas_kernels() == "not OpenBLAS"
        return
    monkeypatch.setattr(minialex.cpu, "_CORETYPE", None)
    name = minialex.cpu.blas_kernels()
    assert re.fullmatch(r"OpenBLAS [A-Za-z0-9_]+", name), name
    monkeypatch.setattr(minialex.cpu, "_CORETYPE", "Haswell")
    monkeypatch.setattr(minialex.cpu, "_cpu_has", lambda flag: False)
    assert minialex.cpu.blas_kernels() == f"{name} (chosen by OPENBLAS_CORETYPE=Haswell)"
    monkeypatch.setattr(minialex.cpu, "_cpu_has", lambda flag: True)
    said = minialex.cpu.blas_kernels()          # AVX2's kernels on a CPU with AVX-512 say so
    avx2_kernels = name in ("OpenBLAS Haswell", "OpenBLAS Zen")
    assert said.endswith("; this CPU has AVX-512)") == avx2_kernels


@pytest.mark.skipif(platform.machine() != "x86_64" or not minialex.cpu._cpu_has("avx2"),
                    reason="Haswell's kernels need an x86-64 CPU with AVX2")
def test_blas_kernels_reads_what_openblas_loaded():
    """A process started with OPENBLAS_CORETYPE=Haswell runs, and names, Haswell's kernels."""
    if minialex.cpu._OPENBLAS is None:
        pytest.skip("NumPy here does not bundle OpenBLAS")
    env = dict(os.environ, OPENBLAS_CORETYPE="Haswell")
    code = "from minialex import cpu; print(cpu.blas_kernels())"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=root)
    clause = "; this CPU has AVX-512" if minialex.cpu._cpu_has("avx512f") else ""
    assert out.stdout.strip() == f"OpenBLAS Haswell (chosen by OPENBLAS_CORETYPE=Haswell{clause})"


def test_in_parallel_waits_for_every_piece_a_helper_took(restore_threads):
    """Each piece takes 0.1 s, so the pool's thread takes some while the caller works on others:
    in_parallel returns only once all three have finished, their results in order."""
    minialex.cpu.configure(2)
    finished = []

    def piece(i):
        time.sleep(0.1)
        finished.append(i)
        return i * 10

    assert minialex.cpu.in_parallel(piece, [0, 1, 2]) == [0, 10, 20]
    assert sorted(finished) == [0, 1, 2]


def test_in_parallel_does_not_wait_for_a_helper_that_took_nothing(restore_threads):
    """With the pool's one thread held elsewhere, the caller does every piece itself and returns
    at once: a helper that never started can take no piece, so waiting for it to wake (45 us on
    an idle core, here for ever) would buy nothing."""
    minialex.cpu.configure(2)
    minialex.cpu.in_parallel(lambda i: i, [0, 1])              # the pool exists
    release = threading.Event()
    minialex.cpu._pool.submit(release.wait)                    # its only thread is busy
    out = []
    caller = threading.Thread(target=lambda: out.append(minialex.cpu.in_parallel(lambda i: -i,
                                                                               [1, 2, 3])))
    try:
        caller.start()
        caller.join(timeout=5)
        assert out == [[-1, -2, -3]], "in_parallel waited for a helper that could take nothing"
    finally:
        release.set()
        caller.join()
