"""Sphinx configuration of minialex's book: the lessons executed, the guides, the paper in our
own words, and the API reference from the docstrings.

Build it from the repository's root (README.md):

    pip install -e ".[docs]" && sphinx-build -b html docs docs/_build/html

and open docs/_build/html/index.html. The lessons are executed during the build through
jupyter-cache (``nb_execution_mode = "cache"``, folder ``docs/_build/.jupyter_cache/<hash of the
package's code>``), so a rebuild with no change re-executes nothing; tests/test_lessons.py shares that cache (see
docs/_ext/minialex_book.py).
"""

import importlib.util
import os
import pathlib
import sys

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))             # minialex, even without `pip install -e .`
sys.path.insert(0, str(DOCS / "_ext"))

import minialex_book  # noqa: E402  (needs the path above)

# -- The lessons: copied in, run with the tests' environment ---------------------------------
minialex_book.sync_lessons()
os.environ.update(minialex_book.execution_env())   # the kernels inherit it

# A lesson that reads Fashion-MNIST cannot run without it: show it unexecuted and say so,
# rather than fail the whole book on a machine without Debian's dataset-fashion-mnist.
_needs_data = [p.name for p in minialex_book.lesson_notebooks()
               if minialex_book.reads_fashion_mnist(minialex_book.lesson_copy(p))]
nb_execution_excludepatterns = []
if not minialex_book.fashion_mnist_available():
    nb_execution_excludepatterns = [f"lessons/{name}" for name in _needs_data]
    print(f"minialex book: Fashion-MNIST is not installed, so {', '.join(_needs_data)} are shown "
          "without outputs (apt-get install dataset-fashion-mnist)", file=sys.stderr)

# -- Figure 2, drawn from the layer table for the landing page --------------------------------
from minialex.tools.figure2 import draw_figure2  # noqa: E402

def _draw_landing_figure(path=DOCS / "_generated" / "figure2_paper.png"):
    """Written only when its bytes change, so that an unchanged rebuild re-reads no page."""
    import io
    buffer = io.BytesIO()
    draw_figure2("paper").savefig(buffer, format="png", dpi=90)
    if not path.exists() or path.read_bytes() != buffer.getvalue():
        path.write_bytes(buffer.getvalue())


def _draw_favicon(path=DOCS / "_generated" / "favicon.png"):
    """A 32x32 icon, two columns of boxes (without it every browser asks for /favicon.ico)."""
    if not path.exists():
        from PIL import Image, ImageDraw
        icon = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
        draw = ImageDraw.Draw(icon)
        for x, colour in ((3, (31, 78, 121, 255)), (18, (192, 57, 43, 255))):
            draw.rectangle((x, 4, x + 10, 27), fill=colour)
        icon.save(path)


_draw_landing_figure()
_draw_favicon()

# -- Project ----------------------------------------------------------------------------------
project = "minialex"
author = "the minialex authors"
copyright = "2026, the minialex authors"
release = "0.1.0"

extensions = [
    "myst_nb",                      # Markdown pages and notebooks (MyST), executed notebooks
    "sphinx.ext.autodoc",           # the API reference, from the docstrings
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",          # numpy-style "Parameters" sections
    "sphinx.ext.viewcode",          # each documented object links to its highlighted source
    "sphinx.ext.mathjax",
]

exclude_patterns = ["_build", "_ext", "_generated", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

# -- MyST and notebook execution --------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3            # [text](page.md#a-heading) works as on GitHub
nb_execution_mode = "cache"
nb_execution_cache_path = str(minialex_book.cache_dir(prune=True))  # keyed by the code too
nb_execution_timeout = 300          # per cell; a lesson with MINIALEX_CI=1 takes seconds
nb_execution_raise_on_error = True  # a lesson that fails fails the build, naming the cell
nb_execution_show_tb = True
nb_merge_streams = True

# -- API reference ----------------------------------------------------------------------------
autosummary_generate = True
# A package's page documents what its own files define; names it re-exports (its __all__) are
# documented once, in the module that defines them.
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True,
                           "ignore-module-all": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# Optional libraries that a module imports at its top (GPU and MPI); the rest import lazily.
autodoc_mock_imports = [m for m in ("mpi4py", "onnx", "onnxruntime")
                        if importlib.util.find_spec(m) is None]
napoleon_numpy_docstring = True

# -- HTML -------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "minialex: AlexNet from the array up"
html_static_path = []
html_theme_options = {
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
    "use_download_button": True,     # each lesson page offers its .ipynb
    "show_toc_level": 2,
}
html_favicon = "_generated/favicon.png"
html_context = {"default_mode": "light"}   # the theme's first visit: a mode, not ""
html_last_updated_fmt = None


def setup(app):
    minialex_book.setup_search(app)
    minialex_book.setup_docstrings(app)
    minialex_book.setup_fresh_source_pages(app)
    minialex_book.setup_code_links(app)
