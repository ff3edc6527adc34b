"""Shared fixtures. Tests that take ``device`` run once per backend: NumPy on the CPU, and CuPy on
'cuda:0' (marked ``gpu``, skipped cleanly where CuPy or a GPU is missing). One test function,
two backends: no copied GPU test files."""

import numpy
import pytest

import minialex
import minialex.cpu

# The tests run the ops as `python cli.py` does: on every core, OpenBLAS held to one thread.
minialex.cpu.configure()

BACKENDS = [
    pytest.param("cpu", id="numpy"),
    pytest.param("cuda:0", id="cupy", marks=pytest.mark.gpu),
]


@pytest.fixture(params=BACKENDS)
def device(request):
    """A Device to run on: 'cpu' (NumPy) or 'cuda:0' (CuPy, skipped without a GPU)."""
    if request.param.startswith("cuda") and not minialex.gpu_available():
        pytest.skip("needs CuPy and a CUDA GPU")
    return minialex.Device(request.param)


@pytest.fixture
def rng():
    return numpy.random.default_rng(1234)
