"""What the book's build and its tests share: where the lessons go, how they run, what they draw.

The site (``sphinx-build -b html docs docs/_build/html``) shows the fifteen lessons executed, and
tests/test_lessons.py executes the same notebooks. Both go through one jupyter-cache folder
(``cache_dir()``): whichever runs first executes a lesson and stores it, keyed by the hash of its
code cells; the other finds it there. Both run the kernel with the same environment
(``execution_env``), so the cached outputs are the ones either would have made.

The lessons live in ``lessons/`` (their sources in ``lessons/src/``); Sphinx reads only files
under ``docs/``, so ``sync_lessons`` copies each notebook into ``docs/lessons/`` (a build folder,
ignored by git), with

- its relative links rewritten for the new place: a lesson links ``../docs/paper.md`` (right on
  GitHub and in Jupyter, from ``lessons/``), which from ``docs/lessons/`` is ``../paper.md``;
- a note under its title: where the notebook is, how to open it, and a download link;
- ``docs/lessons/index.md``, the lesson map, made from the table in ``lessons/README.md``.

Only files whose content changed are written, so an unchanged rebuild reads everything from the
cache and Sphinx's own environment.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
import shutil
from typing import Dict, Iterable, List

import nbformat

DOCS = pathlib.Path(__file__).resolve().parent.parent
ROOT = DOCS.parent
LESSONS = ROOT / "lessons"
LESSON_COPIES = DOCS / "lessons"
#: The jupyter-cache folders the site build and tests/test_lessons.py share (see cache_dir).
CACHE_ROOT = DOCS / "_build" / ".jupyter_cache"
#: Where Debian's dataset-fashion-mnist puts the data (minialex.data reads it from there).
FASHION_MNIST_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
#: The paper, for readers who want the original.
PAPER_URL = ("https://papers.nips.cc/paper/4824-imagenet-classification-with-deep-"
             "convolutional-neural-networks")


def lesson_notebooks() -> List[pathlib.Path]:
    """lessons/01_*.ipynb ... lessons/15_*.ipynb, in order."""
    return sorted(LESSONS.glob("[0-9][0-9]_*.ipynb"))


def sources_fingerprint(package: pathlib.Path = ROOT / "minialex") -> str:
    """A hash of the package's code (its .py, .cu and .cuh files): what a lesson's outputs depend
    on besides its own cells."""
    digest = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*") if p.suffix in (".py", ".cu", ".cuh")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def cache_dir(prune: bool = False) -> pathlib.Path:
    """The jupyter-cache folder for the package as it is now, CACHE_ROOT/<sources_fingerprint>.

    jupyter-cache keys a notebook by its code cells alone, so a change to minialex would still
    find the outputs of the old code: a lesson that the change breaks would look fine. Keyed by
    the package's code too, the lessons run again after any change to it. ``prune`` removes the
    folders of other versions of the code."""
    current = CACHE_ROOT / sources_fingerprint()
    if prune and CACHE_ROOT.is_dir():
        for old in CACHE_ROOT.iterdir():
            if old != current:
                if old.is_dir():
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    old.unlink(missing_ok=True)
    return current


def execution_env() -> Dict[str, str]:
    """The environment every lesson runs in, at build and under test.

    ``MINIALEX_CI=1`` shrinks the lessons' loops (fewer iterations, smaller subsets) without
    changing what they show: all fifteen then run in a few minutes on two cores. One BLAS thread:
    the lessons' matrices are small, and OpenBLAS's spinning threads slow a busy 2-core machine.
    The kernel runs in ``lessons/``'s copy folder, so the checkout is put on ``PYTHONPATH`` too.
    """
    path = [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {"MINIALEX_CI": "1", "PYTHONPATH": os.pathsep.join(dict.fromkeys(path)),
           "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = os.environ.get(var, "1")
    return env


def _code_lines(nb) -> Iterable[str]:
    """Every line of the notebook's code cells, comments removed (what runs, not what it says)."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            for line in cell.source.splitlines():
                code = line.split("#", 1)[0].strip()
                if code:
                    yield code


def reads_fashion_mnist(nb) -> bool:
    """True if a code cell opens Fashion-MNIST (prose that merely mentions it does not count)."""
    return any(re.search(r"""["']fashion[-_]mnist["':]|fashion_mnist\b""", line)
               for line in _code_lines(nb))


def fashion_mnist_available() -> bool:
    return FASHION_MNIST_DIR.is_dir()


def figures_drawn(nb) -> int:
    """How many figures the lesson's code shows: its ``plt.show()`` calls (each shows one)."""
    return sum(line.count("plt.show()") for line in _code_lines(nb))


# --------------------------------------------------------------------------------------------
# The lessons' copies under docs/lessons/
# --------------------------------------------------------------------------------------------

_LINK = re.compile(r"(\]\()([^)\s]+)(\))")


def rewrite_link(target: str) -> str:
    """A link written from ``lessons/`` as seen from ``docs/lessons/``."""
    if re.match(r"^([a-z]+:|#|/)", target):
        return target                                   # a web address, an anchor, absolute
    if target.startswith("../docs/"):
        return "../" + target[len("../docs/"):]         # the book's own pages
    if target.startswith("../"):
        return "../" + target                           # the repository: one more level up
    if target == "README.md" or target.startswith("README.md#"):
        return "index.md" + target[len("README.md"):]   # the lesson map
    if re.match(r"^\d\d_[\w]+\.ipynb", target):
        return target                                   # another lesson, copied beside this one
    return "../../lessons/" + target                    # src/..., _build.py, ...


def _note(path: pathlib.Path) -> str:
    return ("\n\n:::{admonition} Run this lesson yourself\n:class: tip\n"
            f"This page is the notebook `lessons/{path.name}` of the repository, executed when "
            "the site was built (with `MINIALEX_CI=1`, which shrinks its loops; the pictures show "
            "the same things). Open it in two commands from the repository's root:\n\n"
            "    pip install -e \".[lessons]\" && jupyter lab lessons/\n\n"
            f"or {{download}}`download the notebook <../../lessons/{path.name}>`. Section numbers "
            f"(§) refer to [the paper]({PAPER_URL}); [the paper, in our own words](../paper.md) "
            "restates what the code takes from it.\n:::\n")


def lesson_copy(path: pathlib.Path):
    """The notebook at ``path`` as the book shows it: links rewritten, the note under its title."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = _LINK.sub(lambda m: m.group(1) + rewrite_link(m.group(2)) + m.group(3),
                                    cell.source)
    first = next(c for c in nb.cells if c.cell_type == "markdown")
    lines = first.source.split("\n")
    title = next((i for i, line in enumerate(lines) if line.startswith("# ")), None)
    if title is not None:
        lines.insert(title + 1, _note(path).rstrip("\n"))
        first.source = "\n".join(lines)
    return nb


def lesson_title(path: pathlib.Path) -> str:
    """A lesson's title from its first heading: 'Local response normalisation'."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        for line in cell.source.splitlines() if cell.cell_type == "markdown" else ():
            if line.startswith("# "):
                return re.sub(r"^Lesson\s+\d+\s*[·:.-]\s*", "", line[2:].strip())
    return path.stem


def lesson_table(prefix: str = "") -> str:
    """The lesson map: number, title (linked) and what each teaches, the last read from the table
    in lessons/README.md (the one place it is kept); links as seen from docs/lessons/, or from
    docs/ with ``prefix="lessons/"``."""
    readme = (LESSONS / "README.md").read_text()
    teaches = {}
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) >= 3 and cells[0].isdigit():
            teaches[int(cells[0])] = cells[2]
    rows = ["| # | lesson | what it teaches |", "|---|---|---|"]
    for path in lesson_notebooks():
        number = int(path.name[:2])
        what = _LINK.sub(lambda m: m.group(1) + prefix + rewrite_link(m.group(2)) + m.group(3),
                         teaches.get(number, ""))
        rows.append(f"| {number} | [{lesson_title(path)}]({prefix}{path.name}) | {what} |")
    return "\n".join(rows)


def lesson_map() -> str:
    """The lesson map page, docs/lessons/index.md: the table and the lessons' table of contents."""
    table = lesson_table()
    toctree = "\n".join(p.stem for p in lesson_notebooks())
    return ("# The lessons\n\n"
            "Fifteen notebooks build AlexNet from the array up. Each gives the idea in plain "
            "words, what the paper claims (with its section), the code, at least one picture and "
            "a short exercise. Every page below was executed when this site was built. To run "
            "them yourself, from the repository's root:\n\n"
            "    pip install -e \".[lessons]\" && jupyter lab lessons/\n\n"
            "Lessons 5, 8, 9 and 13 read Fashion-MNIST from Debian's `dataset-fashion-mnist` "
            "package (`apt-get install dataset-fashion-mnist`).\n\n"
            f"{table}\n\n"
            f"```{{toctree}}\n:hidden:\n:maxdepth: 1\n\n{toctree}\n```\n")


def _write_if_changed(path: pathlib.Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def sync_lessons() -> List[pathlib.Path]:
    """Copy the lessons into docs/lessons/ (only what changed) and write the lesson map.
    Returns the copies' paths; copies of lessons that no longer exist are removed."""
    LESSON_COPIES.mkdir(exist_ok=True)
    copies = []
    for path in lesson_notebooks():
        target = LESSON_COPIES / path.name
        _write_if_changed(target, nbformat.writes(lesson_copy(path)) + "\n")
        copies.append(target)
    for stale in LESSON_COPIES.glob("*.ipynb"):
        if stale not in copies:
            stale.unlink()
    _write_if_changed(LESSON_COPIES / "index.md", lesson_map())
    (DOCS / "_generated").mkdir(exist_ok=True)
    _write_if_changed(DOCS / "_generated" / "lesson_map.md", lesson_table("lessons/") + "\n")
    return copies


# --------------------------------------------------------------------------------------------
# Search in either spelling
# --------------------------------------------------------------------------------------------

_BRITISH = ((re.compile(r"isation(s?)$"), r"ization\1"),
            (re.compile(r"(al|im)is(e|ed|es|ing)$"), r"\1iz\2"))


def american(word: str) -> str:
    """'normalisation' -> 'normalization', 'optimised' -> 'optimized'; other words unchanged.
    Only endings that are never anything else ('noise', 'precise', 'raise' stay)."""
    for pattern, replacement in _BRITISH:
        word = pattern.sub(replacement, word)
    return word


def setup_search(app) -> None:
    """The site's prose is British English ('normalisation'); a reader searches in either
    spelling. The search index stems every word of the pages; stemming them in their American
    spelling makes 'local response normalization' find the LRN lesson."""
    from sphinx.search import languages
    from sphinx.search.en import SearchEnglish

    class SearchEitherSpelling(SearchEnglish):
        def stem(self, word: str) -> str:
            return super().stem(american(word.lower()))

    languages["en"] = SearchEitherSpelling


# --------------------------------------------------------------------------------------------
# Docstrings written as plain text
# --------------------------------------------------------------------------------------------

def literal_blocks(lines: List[str]) -> List[str]:
    """minialex's docstrings are written to be read as plain text, where an indented block under
    a line is a formula or an example, a list may follow its paragraph directly, and ``|x|`` is an
    absolute value. reStructuredText reads such a block as a quotation, wants a blank line around
    a list, and reads ``*`` and ``|`` as markup. This marks each such block as a literal block (a
    lone ``::`` paragraph, which renders as nothing), puts the blank lines around lists, and
    escapes ``|`` in prose. Left alone: a block under a line that already says ``::``, a field
    (``:param x:``) or a bullet whose text it continues, and simple tables (``=====  ====``)."""
    out: List[str] = []
    previous = ""                          # the last non-blank line
    block_indent = None                    # inside a literal block: the indent it ends under
    list_indent = None                     # inside a bullet list: the bullets' indent
    in_table = False
    rule = re.compile(r"^\s*=+(\s+=+)+\s*$")
    bullet = re.compile(r"^(- |\* |\+ |\d+[.)] )")
    for line in lines:
        indent = len(line) - len(line.lstrip())
        head = line.strip()
        if block_indent is not None:
            if head and indent <= block_indent:
                block_indent = None
                if out and out[-1].strip():
                    out.append("")         # a literal block ends at a blank line
            else:
                out.append(line)
                continue
        if rule.match(line) or in_table:
            # a simple table: from a rule of ='s to a rule followed by a blank line
            if in_table and not head and rule.match(previous):
                in_table = False
            else:
                in_table = True
            out.append(line)
            previous = line if head else previous
            continue
        if not head:
            out.append(line)
            continue
        prev_indent = len(previous) - len(previous.lstrip())
        prev_head = previous.strip()
        if bullet.match(head):
            if out and out[-1].strip() and list_indent is None:
                out.append("")             # a list starts after a blank line
            list_indent = indent
        elif list_indent is not None and indent <= list_indent:
            list_indent = None
            if out and out[-1].strip():
                out.append("")             # ... and ends before one
        elif (previous and indent >= prev_indent + 3 and not prev_head.endswith("::")
                and not prev_head.startswith((":", "..")) and not bullet.match(prev_head)
                and list_indent is None):
            if out and out[-1].strip():
                out.append("")
            out += [" " * prev_indent + "::", ""]
            block_indent = prev_indent
            out.append(line)
            previous = line
            continue
        if prev_head.endswith("::") and indent > prev_indent:
            block_indent = prev_indent
            out.append(line)
            previous = line
            continue
        if "|" in line and not head.startswith(("|", "+")):
            line = re.sub(r"(?<!\\)\|", r"\\|", line)
        out.append(line)
        previous = line
    return out


def setup_docstrings(app) -> None:
    def process(app, what, name, obj, options, lines):
        lines[:] = literal_blocks(lines)
    app.connect("autodoc-process-docstring", process)


# --------------------------------------------------------------------------------------------
# Source pages that follow the code
# --------------------------------------------------------------------------------------------

def setup_fresh_source_pages(app) -> None:
    """sphinx.ext.viewcode rewrites a module's source page only when the module's file is newer
    than the page. A file saved *during* a build, after Sphinx read it and before it wrote the
    page, would leave a stale page for good (its anchors missing). So each build first removes
    the pages of modules changed since the previous build began."""
    def remove_stale(app):
        outdir = pathlib.Path(app.outdir)
        stamp = outdir / ".build-started"
        started = stamp.stat().st_mtime if stamp.exists() else None
        outdir.mkdir(parents=True, exist_ok=True)
        stamp.touch()
        if started is None:
            return
        for source in (ROOT / "minialex").rglob("*.py"):
            if source.stat().st_mtime >= started:
                page = outdir / "_modules" / source.relative_to(ROOT).with_suffix(".html")
                if source.name == "__init__.py":
                    page = page.parent.with_suffix(".html")
                page.unlink(missing_ok=True)
    app.connect("builder-inited", remove_stale)


# --------------------------------------------------------------------------------------------
# Links to the code
# --------------------------------------------------------------------------------------------

def setup_code_links(app) -> None:
    """The guides link the code as files, ``[optim.py](../minialex/optim.py)``: right on GitHub and
    in a clone. On the site such a link would download the file; it opens the module's
    highlighted source page instead (sphinx.ext.viewcode's), where there is one."""
    import posixpath

    from docutils import nodes
    from sphinx import addnodes
    from sphinx.util.osutil import relative_uri

    def to_source_pages(app, doctree, docname):
        modules = getattr(app.env, "_viewcode_modules", {})
        for node in list(doctree.findall(addnodes.download_reference)):
            target = posixpath.normpath(posixpath.join(posixpath.dirname(docname),
                                                       node.get("reftarget", "")))
            if not (target.startswith("../minialex/") and target.endswith(".py")):
                continue
            module = target[len("../"):-len(".py")].replace("/", ".")
            module = module[:-len(".__init__")] if module.endswith(".__init__") else module
            if not modules.get(module):
                continue                   # no source page for it: keep the download
            page = "_modules/" + module.replace(".", "/") + app.builder.out_suffix
            uri = relative_uri(app.builder.get_target_uri(docname), page)
            link = nodes.reference("", "", *node.children, refuri=uri, internal=True,
                                   classes=["reference", "internal"])
            node.replace_self(link)
    app.connect("doctree-resolved", to_source_pages)
