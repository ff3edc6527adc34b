"""Execute every lesson notebook top to bottom (lessons/NN_*.ipynb) with nbclient.

The notebooks read MINIALEX_CI=1 to shrink their loops (fewer iterations, smaller sizes) without
changing what they show; this file sets it for the kernel itself, so the tests behave the same
whether or not .ci/run exported it. Notebooks are committed without outputs (lessons/README.md),
and each must match its source in lessons/src/ (lessons/_build.py).
"""

import os
import pathlib
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
LESSONS = ROOT / "lessons"
NOTEBOOKS = sorted(LESSONS.glob("[0-9][0-9]_*.ipynb"))

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

# With MINIALEX_CI=1 a lesson should take ~20 s; this is a generous guard against a hang.
CELL_TIMEOUT_S = 300


def test_every_lesson_is_there():
    numbers = sorted(int(p.name[:2]) for p in NOTEBOOKS)
    assert numbers == list(range(1, 16)), f"expected lessons 01..15 in {LESSONS}, found {numbers}"


def test_notebooks_match_their_sources():
    result = subprocess.run([sys.executable, str(LESSONS / "_build.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stripped(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, \
                f"{path.name}: outputs are committed stripped (see lessons/README.md)"


def _fashion_mnist_available() -> bool:
    from minialex.data.fashion_mnist import DEFAULT_DIR
    return os.path.isdir(DEFAULT_DIR)


@pytest.mark.lessons
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_lesson_executes(path, monkeypatch):
    monkeypatch.setenv("MINIALEX_CI", "1")
    # The kernel runs in lessons/; make the checkout importable even without `pip install -e .`
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    # One BLAS thread unless the caller chose otherwise: the lessons' matrices are small, and on a
    # busy 2-core machine OpenBLAS's spinning threads can make a 1 ms step take 100 ms or more.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if var not in os.environ:
            monkeypatch.setenv(var, "1")
    nb = nbformat.read(path, as_version=4)
    if "fashion-mnist" in path.read_text() and not _fashion_mnist_available():
        pytest.skip(f"{path.name} reads Fashion-MNIST, which is not installed "
                    "(apt-get install dataset-fashion-mnist)")
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(LESSONS)}})
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError naming the failing cell
    elapsed = time.perf_counter() - start
    images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.outputs
                 if "image/png" in o.get("data", {}))
    assert images >= 1, f"{path.name}: every lesson draws at least one picture"
    print(f"{path.name}: {elapsed:.1f} s with MINIALEX_CI=1")
