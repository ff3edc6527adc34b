"""Every lesson notebook (lessons/NN_*.ipynb) runs top to bottom, once, shared with the book.

The site build (``sphinx-build -b html docs docs/_build/html``) executes the same notebooks. Both
go through one jupyter-cache folder, docs/_build/.jupyter_cache/<hash of the package's code>, where
a notebook is keyed by the hash of its code cells: whichever runs first executes a lesson and
stores it with its outputs, the other reads it from there; a change to the package or to a
lesson's code runs it again. So CI, which runs these tests before tests/test_site.py builds the site, executes
each lesson once; a lesson whose code changed gets a new hash and runs again. Both run the kernel
with the same environment (docs/_ext/minialex_book.py: ``execution_env``), MINIALEX_CI=1 among it:
the lessons then shrink their loops without changing what they show.

Notebooks are committed without outputs (lessons/README.md), and each must match its source in
lessons/src/ (lessons/_build.py).
"""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
LESSONS = ROOT / "lessons"
NOTEBOOKS = sorted(LESSONS.glob("[0-9][0-9]_*.ipynb"))
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
import minialex_book  # noqa: E402  (docs/_ext, put on the path above)

# With MINIALEX_CI=1 a lesson takes seconds; this is a generous guard against a hang.
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


def _notebook(code_cells, prose=""):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(prose)] + [nbformat.v4.new_code_cell(c)
                                                         for c in code_cells]
    return nb


def test_skip_rule_reads_code_not_prose():
    # A lesson is skipped without the data only if its code opens Fashion-MNIST: lessons 6, 7,
    # 10 and 12 merely mention it in prose and must run everywhere.
    assert not minialex_book.reads_fashion_mnist(_notebook(
        ["x = 1  # compare with fashion-mnist later"],
        prose="`python cli.py train --data fashion-mnist` trains it"))
    assert minialex_book.reads_fashion_mnist(_notebook(
        ['ds = open_dataset("fashion-mnist", "train")']))
    assert minialex_book.reads_fashion_mnist(_notebook(
        ["from minialex.data.fashion_mnist import DEFAULT_DIR"]))
    readers = {p.name[:2] for p in NOTEBOOKS
               if minialex_book.reads_fashion_mnist(nbformat.read(p, as_version=4))}
    assert not readers & {"06", "07", "10", "12"}, readers


def test_figure_count_reads_code():
    nb = _notebook(["plt.plot(x); plt.show()", "# plt.show() in a comment", "plt.show()"],
                   prose="we call plt.show()")
    assert minialex_book.figures_drawn(nb) == 2


def _execute_or_read_cache(path, cache_dir=None):
    """The executed notebook: from the shared jupyter-cache, or executed now and stored there.
    Returns (notebook, seconds it took to execute, True if it was read from the cache)."""
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn
    from jupyter_cache.executors.utils import single_nb_execution

    nb = nbformat.read(path, as_version=4)
    cache = get_cache(str(cache_dir or minialex_book.cache_dir()))
    try:
        record = cache.match_cache_notebook(nb)
        _, executed = cache.merge_match_into_notebook(nb)
        return executed, record.data.get("execution_seconds") or 0.0, True
    except KeyError:
        pass
    # Executed as the book's build executes it (myst-nb calls the same function): in the
    # notebook's folder, no timing metadata, so the stored notebook hashes as the build expects.
    result = single_nb_execution(nb, cwd=str(path.parent), timeout=CELL_TIMEOUT_S,
                                 allow_errors=False, meta_override=True)
    if result.err is not None:
        pytest.fail(f"{path.name} failed to execute:\n{result.exc_string[-3000:]}",
                    pytrace=False)
    elapsed = result.time
    cache.cache_notebook_bundle(CacheBundleIn(nb, str(path),
                                              data={"execution_seconds": elapsed}),
                                check_validity=False, overwrite=True)
    return nb, elapsed, False


def test_a_change_to_the_package_runs_the_lessons_again(tmp_path):
    # The shared cache is keyed by the package's code too: an edit to any of its .py or .cu
    # files gives a new folder (the lessons run again), anything else does not.
    package = tmp_path / "minialex"
    (package / "kernels").mkdir(parents=True)
    (package / "ops.py").write_text("def add(a, b):\n    return a + b\n")
    (package / "kernels" / "relu.cu").write_text("// kernel\n")
    before = minialex_book.sources_fingerprint(package)
    (package / "notes.txt").write_text("not code")
    assert minialex_book.sources_fingerprint(package) == before
    (package / "kernels" / "relu.cu").write_text("// kernel, changed\n")
    after_cu = minialex_book.sources_fingerprint(package)
    (package / "ops.py").write_text("def add(a, b):\n    return b + a\n")
    assert len({before, after_cu, minialex_book.sources_fingerprint(package)}) == 3
    assert minialex_book.cache_dir().parent == minialex_book.CACHE_ROOT
    assert minialex_book.cache_dir().name == minialex_book.sources_fingerprint()


def test_what_the_tests_execute_the_book_finds(tmp_path):
    # The round trip through the cache: a notebook executed here is found by the book's build,
    # which looks it up (myst-nb's cache mode) by an unexecuted copy of the same notebook.
    from jupyter_cache import get_cache
    path = tmp_path / "tiny.ipynb"
    nbformat.write(_notebook(["print(6 * 7)"], prose="# A tiny lesson"), path)
    executed, _, cached = _execute_or_read_cache(path, tmp_path / "cache")
    assert not cached and executed.cells[1].outputs[0]["text"] == "42\n"
    copy = _notebook(["print(6 * 7)"], prose="# The same code, other prose")
    record = get_cache(str(tmp_path / "cache")).match_cache_notebook(copy)  # KeyError if not
    assert record.data["execution_seconds"] > 0
    _, again, cached = _execute_or_read_cache(path, tmp_path / "cache")
    assert cached


@pytest.mark.lessons
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_lesson_executes(path, monkeypatch):
    for name, value in minialex_book.execution_env().items():
        monkeypatch.setenv(name, value)       # the kernel inherits the book's environment
    nb = nbformat.read(path, as_version=4)
    if minialex_book.reads_fashion_mnist(nb) and not minialex_book.fashion_mnist_available():
        pytest.skip(f"{path.name} reads Fashion-MNIST, which is not installed "
                    "(apt-get install dataset-fashion-mnist)")
    executed, seconds, cached = _execute_or_read_cache(path)
    for cell in executed.cells:
        if cell.cell_type == "code":
            errors = [o for o in cell.outputs if o.get("output_type") == "error"]
            assert not errors, f"{path.name}: a cell raised {errors[0].get('ename')}"
    images = sum(1 for c in executed.cells if c.cell_type == "code" for o in c.outputs
                 if "image/png" in o.get("data", {}))
    drawn = minialex_book.figures_drawn(nb)
    assert images >= max(drawn, 1), \
        f"{path.name}: {images} pictures in the outputs, but its code shows {drawn}"
    print(f"{path.name}: {seconds:.1f} s with MINIALEX_CI=1"
          + (" (read from the cache in docs/_build/)" if cached else ""))
